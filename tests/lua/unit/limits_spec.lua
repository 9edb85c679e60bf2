local limits = require("weir.limits")

describe("weir.limits token buckets", function()
  it("allows a burst, then refuses with the seconds until the next token", function()
    local l = limits.limiter({ rate = 1, burst = 2, max_keys = 10 })
    assert.is_true(l:take("alice", 0))
    assert.is_true(l:take("alice", 0))
    local ok, retry = l:take("alice", 0)
    assert.is_false(ok)
    assert.equal(1, retry)
    ok, retry = l:take("alice", 500) -- half a token: a whole second still to wait
    assert.is_false(ok)
    assert.equal(1, retry)
    assert.is_true(l:take("alice", 1500)) -- 1.5 tokens by now, one taken
    assert.is_false(l:take("alice", 1600))
    -- other keys have their own bucket
    assert.is_true(l:take("bob", 1600))
  end)

  it("refills at the rate and never past the burst", function()
    local l = limits.limiter({ rate = 0.1, burst = 1, max_keys = 10 })
    assert.is_true(l:take("k", 0))
    local ok, retry = l:take("k", 0)
    assert.is_false(ok)
    assert.equal(10, retry)
    ok, retry = l:take("k", 5000)
    assert.is_false(ok)
    assert.equal(5, retry)
    assert.is_true(l:take("k", 10000))
    -- a day idle gives one burst, not a day's worth of tokens
    local fast = limits.limiter({ rate = 100, burst = 3, max_keys = 10 })
    local n = 0
    while fast:take("k", 86400000) do n = n + 1 end
    assert.equal(3, n)
  end)

  it("refills nothing when the clock goes back", function()
    local l = limits.limiter({ rate = 1, burst = 1, max_keys = 10 })
    assert.is_true(l:take("k", 10000))
    assert.is_false(l:take("k", 0))
    assert.is_false(l:take("k", 10500))
    assert.is_true(l:take("k", 11000))
  end)

  it("evicts the key used least recently when full", function()
    local l = limits.limiter({ rate = 1, burst = 1, max_keys = 3 })
    assert.is_true(l:take("a", 0))
    assert.is_true(l:take("b", 0))
    assert.is_true(l:take("c", 0))
    assert.is_false(l:take("a", 0)) -- a is now the most recent
    assert.is_true(l:take("d", 0)) -- evicts b
    assert.equal(3, l:size())
    assert.is_false(l:take("a", 0)) -- a kept its empty bucket
    assert.is_false(l:take("c", 0))
    assert.is_false(l:take("d", 0))
    assert.is_true(l:take("b", 0)) -- b starts over (and evicts a)
    assert.is_true(l:take("a", 0))
    assert.equal(3, l:size())
  end)

  it("keeps its memory bounded whatever keys arrive", function()
    local l = limits.limiter({ rate = 1, burst = 5, max_keys = 1000 })
    for i = 1, 1000 do l:take("addr:" .. i, i) end
    collectgarbage()
    collectgarbage()
    local base = collectgarbage("count")
    for i = 1001, 100000 do
      assert(l:take("addr:" .. i, i)) -- every new key gets a full bucket
    end
    collectgarbage()
    collectgarbage()
    assert.equal(1000, l:size())
    local grown = collectgarbage("count") - base
    assert.is_true(grown < 256, string.format("grew by %.0f KB", grown))
    -- the last 1000 keys are the ones kept, in order
    local n, node = 0, l.head
    while node do
      n = n + 1
      assert.equal("addr:" .. (100001 - n), node.key)
      node = node.next
    end
    assert.equal(1000, n)
  end)

  it("refuses bad options", function()
    assert.has_error(function() limits.limiter({ rate = 0, burst = 1, max_keys = 1 }) end)
    assert.has_error(function() limits.limiter({ rate = 1, burst = 0.5, max_keys = 1 }) end)
    assert.has_error(function() limits.limiter({ rate = 1, burst = 1, max_keys = 0 }) end)
    assert.has_error(function() limits.limiter({ rate = 0 / 0, burst = 1, max_keys = 1 }) end)
  end)
end)

describe("weir.limits addresses", function()
  it("writes addresses canonically", function()
    local cases = {
      ["192.0.2.1"] = "192.0.2.1", ["::1"] = "::1", ["::"] = "::",
      ["2001:DB8:0:0:1:0:0:1"] = "2001:db8::1:0:0:1",
      ["2001:db8:0:0:0:0:2:1"] = "2001:db8::2:1",
      ["2001:0db8:0000:0000:0000:0000:0000:0001"] = "2001:db8::1",
      ["1:0:0:1:0:0:0:1"] = "1:0:0:1::1", ["1:0:1:0:1:0:1:0"] = "1:0:1:0:1:0:1:0",
      ["fe80::"] = "fe80::", ["::ffff:192.0.2.1"] = "192.0.2.1",
      ["::FFFF:c000:0201"] = "192.0.2.1", ["64:ff9b::192.0.2.1"] = "64:ff9b::c000:201",
    }
    for input, want in pairs(cases) do
      assert.equal(want, limits.address(input), input)
    end
  end)

  it("refuses what is not an address", function()
    for _, bad in ipairs({ "", "1.2.3", "1.2.3.4.5", "01.2.3.4", "256.1.1.1", "1.2.3.-4",
                           "1::2::3", ":1", "1:", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7",
                           "fe80::1%eth0", "12345::", "::g", "1.2.3.4::", "[::1]",
                           "example.com", " 1.2.3.4", "1:2:3:4:5:6:7::8" }) do
      assert.is_nil(limits.address(bad), bad)
    end
    assert.is_nil(limits.address(nil))
  end)

  it("keys IPv6 clients by their /64", function()
    assert.equal("2001:db8:1:2::/64", limits.address_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"))
    assert.equal("192.0.2.7", limits.address_key("192.0.2.7"))
    assert.equal("192.0.2.7", limits.address_key("::ffff:192.0.2.7"))
  end)
end)

describe("weir.limits trusted proxies", function()
  it("reads CIDRs of both families", function()
    local p = assert(limits.proxies({ "10.0.0.0/8", "192.0.2.128/25", "fd00::/8", "::1", "203.0.113.9" }))
    for _, a in ipairs({ "10.1.2.3", "192.0.2.200", "fd12::1", "::1", "203.0.113.9", "::ffff:10.9.9.9" }) do
      assert.is_true(p:contains(a), a)
    end
    for _, a in ipairs({ "11.0.0.1", "192.0.2.127", "fe00::1", "::2", "203.0.113.10", "garbage" }) do
      assert.is_false(p:contains(a), a)
    end
    local mapped = assert(limits.proxies({ "::ffff:10.0.0.0/104" }))
    assert.is_true(mapped:contains("10.200.0.1"))
  end)

  it("refuses a bad entry, naming it", function()
    local p, err = limits.proxies({ "10.0.0.0/8", "10.1.0.0/8" })
    assert.is_nil(p)
    assert.equal('trusted proxy "10.1.0.0/8": address has bits set past the prefix', err)
    p, err = limits.proxies({ "10.0.0.0/33" })
    assert.is_nil(p)
    assert.equal('trusted proxy "10.0.0.0/33": prefix length out of range', err)
    p, err = limits.proxies({ "proxy.internal" })
    assert.is_nil(p)
    assert.equal('trusted proxy 1: expected an address or CIDR, got "proxy.internal"', err)
    assert.is_nil((limits.proxies({ "192.0.2.192/25" })))
    assert.is_nil((limits.proxies({ 42 })))
  end)
end)

describe("weir.limits client address", function()
  local proxies = assert(limits.proxies({ "10.0.0.0/8", "::1" }))

  it("ignores X-Forwarded-For from a peer that is not a trusted proxy", function()
    assert.equal("198.51.100.7", limits.client_address("198.51.100.7", "10.0.0.1", proxies))
    assert.equal("198.51.100.7", limits.client_address("198.51.100.7", "1.1.1.1, 2.2.2.2", proxies))
    assert.equal("198.51.100.7", limits.client_address("::ffff:198.51.100.7", "1.1.1.1", proxies))
    assert.equal("10.0.0.1", limits.client_address("10.0.0.1", "1.1.1.1", nil))
  end)

  it("takes the right-most hop that is not a trusted proxy", function()
    assert.equal("203.0.113.5", limits.client_address("10.0.0.1", "203.0.113.5", proxies))
    assert.equal("203.0.113.5", limits.client_address("10.0.0.1", "203.0.113.5, 10.0.0.2", proxies))
    assert.equal("203.0.113.5", limits.client_address("::ffff:10.0.0.1", " 203.0.113.5 ,10.0.0.2 ", proxies))
    assert.equal("2001:db8::5", limits.client_address("::1", "2001:DB8::5", proxies))
    assert.equal("2001:db8::5", limits.client_address("::1", "[2001:db8::5]:4711", proxies))
    assert.equal("203.0.113.5", limits.client_address("::1", "203.0.113.5:4711", proxies))
    -- header lines as a list, in order
    assert.equal("203.0.113.5", limits.client_address("10.0.0.1", { "6.6.6.6", "203.0.113.5" }, proxies))
  end)

  it("never believes what the client wrote left of its own address", function()
    -- the client sends "X-Forwarded-For: 1.1.1.1" (or a trusted-looking
    -- 10.0.0.9); the proxy appends the address it saw
    assert.equal("203.0.113.5", limits.client_address("10.0.0.1", "1.1.1.1, 203.0.113.5", proxies))
    assert.equal("203.0.113.5", limits.client_address("10.0.0.1", "10.0.0.9, 203.0.113.5", proxies))
    assert.equal("203.0.113.5",
                 limits.client_address("10.0.0.1", "garbage, 1.1.1.1, 203.0.113.5, 10.0.0.2", proxies))
  end)

  it("stops at the last trusted hop on a malformed entry or an all-trusted chain", function()
    assert.equal("10.0.0.2", limits.client_address("10.0.0.1", "unknown, 10.0.0.2", proxies))
    assert.equal("10.0.0.1", limits.client_address("10.0.0.1", "not an address", proxies))
    assert.equal("10.0.0.1", limits.client_address("10.0.0.1", "", proxies))
    assert.equal("10.0.0.1", limits.client_address("10.0.0.1", "1.1.1.1,,", proxies))
    assert.equal("10.0.0.3", limits.client_address("10.0.0.1", "10.0.0.3, 10.0.0.2", proxies))
    assert.equal("10.0.0.1", limits.client_address("10.0.0.1", nil, proxies))
    assert.equal("::1", limits.client_address("::1", "[::1", proxies))
    -- only MAX_HOPS entries are read
    local hops = {}
    for i = 1, 100 do hops[i] = "10.0.1." .. i end
    hops[1] = "203.0.113.5"
    assert.equal("10.0.1.69", limits.client_address("10.0.0.1", table.concat(hops, ","), proxies))
  end)

  it("gives a peer that is not an IP address back as it is", function()
    assert.equal("unix", limits.client_address("unix", "1.1.1.1", proxies))
  end)
end)
