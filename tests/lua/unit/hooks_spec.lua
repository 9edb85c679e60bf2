-- weir.hooks: the Weir-Signature header (signing, strict parsing, the
-- window, rotation, the replay cache and its bound), a vector computed by
-- openssl, the body -> params mapping with JSON pointers, and the
-- pipeline's triggers.webhook checked by weir.pipeline.load.
local hooks = require("weir.hooks")
local json = require("weir.json")
local pipeline = require("weir.pipeline")
local H = require("helpers")

local S1 = "whsec-one-0123456789abcdef"
local S2 = "whsec-two-fedcba9876543210"
local NOW = 1800000000
local BODY = '{"day":"2026-12-07","n":3}'
local SIG = string.rep("a", 64)

describe("weir.hooks.sign and verifier:check", function()
  it("round-trips and refuses the same request again", function()
    local v = hooks.verifier()
    local h = hooks.sign(S1, NOW, BODY)
    assert.matches("^t=1800000000,v1=%x+$", h)
    assert.equal(64, #h:match("v1=(%x+)"))
    assert.is_true(v:check({ S1 }, h, BODY, NOW))
    assert.same({ false, "replayed" }, { v:check({ S1 }, h, BODY, NOW + 1) })
    -- another body or timestamp is another request
    assert.is_true(v:check(S1, hooks.sign(S1, NOW, BODY .. " "), BODY .. " ", NOW))
    assert.is_true(v:check(S1, hooks.sign(S1, NOW + 1, BODY), BODY, NOW))
  end)

  it("matches a vector computed by openssl", function()
    local dir = H.tmpdir()
    local msg = "1800000000." .. BODY
    H.write(dir .. "/msg", msg)
    local p = assert(io.popen("openssl dgst -sha256 -hmac '" .. S1 .. "' " .. dir .. "/msg"))
    local out = p:read("*a")
    p:close()
    H.cleanup(dir)
    local want = out:match("= (%x+)%s*$")
    assert.equal(64, #want)
    assert.equal("t=1800000000,v1=" .. want, hooks.sign(S1, NOW, BODY))
    assert.is_true(hooks.verifier():check(S1, "t=1800000000,v1=" .. want, BODY, NOW))
  end)

  it("gives each refusal its fixed reason", function()
    local v = hooks.verifier()
    local function refused(reason, header, body, now, secrets)
      assert.same({ false, reason }, { v:check(secrets or { S1 }, header, body or BODY, now or NOW) })
    end
    refused("missing signature", nil)
    refused("missing signature", "")
    refused("malformed signature", "v1=" .. SIG)
    refused("malformed signature", "t=" .. NOW)
    refused("malformed signature", "garbage")
    refused("timestamp outside the window", hooks.sign(S1, NOW - 301, BODY))
    refused("timestamp outside the window", hooks.sign(S1, NOW + 301, BODY))
    refused("bad signature", "t=" .. NOW .. ",v1=" .. SIG)
    refused("bad signature", hooks.sign(S2, NOW, BODY))
    refused("bad signature", hooks.sign(S1, NOW, BODY), BODY .. "x")
    refused("bad signature", (hooks.sign(S1, NOW, BODY):gsub("t=%d+", "t=" .. (NOW + 1))))
    local h = hooks.sign(S1, NOW, BODY)
    assert.is_true(v:check({ S1 }, h, BODY, NOW))
    refused("replayed", h)
    -- a refused request is not remembered: a bad one does not block a good one
    assert.is_false(v:seen(SIG))
    assert.equal(1, v:size())
  end)

  it("accepts the edges of the window and refuses one second beyond", function()
    local v = hooks.verifier({ window = "2m" })
    assert.is_true(v:check(S1, hooks.sign(S1, NOW - 120, BODY), BODY, NOW))
    assert.is_true(v:check(S1, hooks.sign(S1, NOW + 120, BODY), BODY, NOW))
    assert.same({ false, "timestamp outside the window" },
                { v:check(S1, hooks.sign(S1, NOW - 121, BODY), BODY, NOW) })
    assert.same({ false, "timestamp outside the window" },
                { v:check(S1, hooks.sign(S1, NOW + 121, BODY), BODY, NOW) })
    assert.has_error(function() hooks.verifier({ window = "0s" }) end)
    assert.has_error(function() hooks.verifier({ window = "soon" }) end)
  end)

  it("accepts any of the secrets (rotation) and any v1 entry", function()
    local v = hooks.verifier()
    -- the sender still signs with the old secret; the server knows both
    assert.is_true(v:check({ S2, S1 }, hooks.sign(S1, NOW, BODY), BODY, NOW))
    local b2 = BODY .. "\n"
    local old, new = hooks.sign(S1, NOW, b2), hooks.sign(S2, NOW, b2)
    local both = old .. "," .. new:match("(v1=%x+)")
    assert.is_true(v:check({ S2, S1 }, both, b2, NOW))
    -- a replay keeping only one of the two entries is still the same message
    assert.same({ false, "replayed" }, { v:check({ S2, S1 }, old, b2, NOW) })
    assert.same({ false, "replayed" }, { v:check({ S2, S1 }, new, b2, NOW) })
    -- the server dropped the old secret: a request signed with it fails
    assert.same({ false, "bad signature" },
                { v:check({ S2 }, hooks.sign(S1, NOW, "{}"), "{}", NOW) })
  end)

  it("parses the header strictly", function()
    local v = hooks.verifier()
    local good = hooks.sign(S1, NOW, BODY)
    local sig = good:match("v1=(%x+)")
    local function malformed(h)
      assert.same({ false, "malformed signature" }, { v:check(S1, h, BODY, NOW) })
    end
    malformed("t=" .. NOW .. ", v1=" .. sig)                        -- a space
    malformed(" t=" .. NOW .. ",v1=" .. sig)
    malformed("t=" .. NOW .. ",v1=" .. sig .. " ")
    malformed("t=" .. NOW .. ",t=" .. NOW .. ",v1=" .. sig)         -- duplicate t
    malformed("t=" .. NOW .. ",v1=" .. sig:upper())                 -- uppercase hex
    malformed("t=" .. NOW .. ",v1=" .. sig:sub(2))                  -- 63 digits
    malformed("t=" .. NOW .. ",v1=" .. sig .. "0")                  -- 65 digits
    malformed("t=+" .. NOW .. ",v1=" .. sig)
    malformed("t=" .. NOW .. ".5,v1=" .. sig)
    malformed("t=1" .. string.rep("0", 12) .. ",v1=" .. sig)        -- 13 digits
    malformed("t=" .. NOW .. ",,v1=" .. sig)
    malformed("t=" .. NOW .. ",v1=" .. sig .. ",")
    malformed("t=" .. NOW .. ",v1")
    malformed("t=" .. NOW .. ",v1==" .. sig)
    malformed("t=" .. NOW .. ",v0=abc")                             -- no v1
    -- too many entries: 9, even when the matching one is among them
    malformed("t=" .. NOW .. string.rep(",v1=" .. SIG, 7) .. ",v1=" .. sig)
    -- oversized
    malformed("t=" .. NOW .. ",v1=" .. sig .. ",x=" .. string.rep("y", 1024))
    -- extra keys are ignored, v1 entries may be several, order is free
    assert.is_true(v:check(S1, "v0=whatever,v1=" .. SIG .. ",v1=" .. sig .. ",t=" .. NOW
                           .. ",scheme=x", BODY, NOW))
    -- at most 8 entries in all
    local b = BODY .. " "
    local s2 = hooks.sign(S1, NOW, b):match("v1=(%x+)")
    assert.is_true(v:check(S1, "t=" .. NOW .. string.rep(",v1=" .. SIG, 6) .. ",v1=" .. s2, b, NOW))
  end)

  it("keeps the replay cache bounded over 100,000 distinct signatures", function()
    local v = hooks.verifier({ window = 300, max_seen = 1000 })
    local n = 100000
    for i = 1, n do
      local body = tostring(i)
      local t = NOW + math.floor(i / 1000)
      assert(v:check(S1, hooks.sign(S1, t, body), body, t))
      assert(v:size() <= 1000)
    end
    assert.equal(1000, v:size())
    -- the newest are remembered; the oldest were forgotten
    local last = tostring(n)
    local t = NOW + math.floor(n / 1000)
    assert.same({ false, "replayed" }, { v:check(S1, hooks.sign(S1, t, last), last, t) })
    assert.is_true(v:check(S1, hooks.sign(S1, t, "1"), "1", t))
  end)

  it("forgets signatures that left the window before newer ones", function()
    local v = hooks.verifier({ window = 60, max_seen = 3 })
    local old = hooks.sign(S1, NOW, "a")
    assert.is_true(v:check(S1, old, "a", NOW))
    local sig_old = old:match("v1=(%x+)")
    assert.is_true(v:seen(sig_old))
    -- two minutes later, two new requests: the old one is out of the
    -- window (and gone), the new ones stay
    local later = NOW + 120
    assert.is_true(v:check(S1, hooks.sign(S1, later, "b"), "b", later))
    assert.is_false(v:seen(sig_old))
    assert.is_true(v:check(S1, hooks.sign(S1, later, "c"), "c", later))
    assert.equal(2, v:size())
    -- over max_seen the oldest timestamp goes first
    v:remember(string.rep("1", 64), later - 50, later)
    v:remember(string.rep("2", 64), later + 10, later)
    assert.equal(3, v:size())
    assert.is_false(v:seen(string.rep("1", 64)))
    assert.is_true(v:seen(string.rep("2", 64)))
  end)

  it("asks the claim function and refuses what it has seen", function()
    local claimed = {}
    local function claim(sigs, t)
      assert.equal(NOW, t)
      for _, s in ipairs(sigs) do if claimed[s] then return false end end
      for _, s in ipairs(sigs) do claimed[s] = true end
      return true
    end
    local h = hooks.sign(S1, NOW, BODY)
    -- two servers sharing one store: the second refuses what the first took
    local a, b = hooks.verifier({ claim = claim }), hooks.verifier({ claim = claim })
    assert.is_true(a:check({ S1, S2 }, h, BODY, NOW))
    local n = 0
    for _ in pairs(claimed) do n = n + 1 end
    assert.equal(2, n)
    assert.same({ false, "replayed" }, { b:check({ S1, S2 }, h, BODY, NOW) })
    -- a bad signature never reaches the store
    assert.same({ false, "bad signature" }, { b:check(S1, "t=" .. NOW .. ",v1=" .. SIG, BODY, NOW) })
    assert.is_nil(claimed[SIG])
  end)
end)

describe("weir.hooks.params", function()
  local decls = {
    day = { type = "string" },
    n = { type = "integer", default = 1 },
    ratio = { type = "number", default = 0.5 },
    full = { type = "boolean", default = false },
    mode = { type = "string", enum = { "fast", "slow" }, default = "fast" },
  }

  it("takes dates and lists (a JSON array or a comma-separated string)", function()
    local d = { day = { type = "date" }, ids = { type = "integer", list = true, default = { 1 } } }
    assert.same({ day = "2026-12-07", ids = { 2, 3 } },
                assert(hooks.params(d, '{"day":"2026-12-07","ids":[2,3]}')))
    assert.same({ day = "2026-12-07", ids = { 4, 5 } },
                assert(hooks.params(d, '{"day":"2026-12-07","ids":"4,5"}')))
    local _, errs = hooks.params(d, '{"day":"2026-13-01","ids":[1,"x"]}')
    assert.same({
      { pointer = "/day", detail = 'param "day": expected date, got "2026-13-01" (YYYY-MM-DD)' },
      { pointer = "/ids",
        detail = 'param "ids": item 2: expected integer, got "x" (decimal digits, within +-2^53)' },
    }, errs)
  end)

  it("takes the top-level members, with defaults for the absent", function()
    local p = assert(hooks.params(decls, '{"day":"2026-12-07","n":3,"full":true}'))
    assert.same({ day = "2026-12-07", n = 3, ratio = 0.5, full = true, mode = "fast" }, p)
  end)

  it("refuses unknown members, wrong JSON types and missing required params with pointers", function()
    local _, errs = hooks.params(decls, '{"day":7,"n":"3","full":"true","a/b":1,"ratio":null}')
    assert.same({
      { pointer = "/a~1b", detail = "unknown field (not a param of the pipeline)" },
      { pointer = "/day", detail = 'param "day": expected string, got number' },
      { pointer = "/full", detail = 'param "full": expected boolean, got string' },
      { pointer = "/n", detail = 'param "n": expected integer, got string' },
      { pointer = "/ratio", detail = 'param "ratio": expected number, got null' },
    }, errs)
    _, errs = hooks.params(decls, '{"n":1.5,"day":"x","mode":"medium"}')
    assert.same({
      { pointer = "/mode", detail = 'param "mode": must be one of "fast", "slow", got "medium"' },
      { pointer = "/n",
        detail = 'param "n": expected integer, got 1.5 (decimal digits, within +-2^53)' },
    }, errs)
    _, errs = hooks.params(decls, '{"n":2}')
    assert.same({ { pointer = "/day", detail = 'param "day" is required (no default)' } }, errs)
    _, errs = hooks.params(decls, '{"n":9007199254740993,"day":"x"}')
    assert.equal("/n", errs[1].pointer)
  end)

  it("refuses a body that is not one JSON object", function()
    for _, b in ipairs({ "", "[1]", '"x"', "{", '{"day":"a","day":"b"}', "\239\187\191{}" }) do
      local p, errs = hooks.params(decls, b)
      assert.is_nil(p)
      assert.equal("", errs[1].pointer)
    end
  end)

  it("maps params through JSON pointers, with ~0 and ~1 escapes", function()
    local body = json.encode({
      data = { ["a/b"] = { ["m~n"] = "2026-12-07" }, items = json.decode("[10, 20]") },
      sender = { login = "x" }, [""] = { flag = true },
    })
    local mapping = { day = "/data/a~1b/m~0n", n = "/data/items/1", full = "//flag" }
    local p = assert(hooks.params(decls, body, mapping))
    assert.same({ day = "2026-12-07", n = 20, ratio = 0.5, full = true, mode = "fast" }, p)
    -- with a mapping the rest of the body is not params: no unknown field
    -- error; a pointer to nothing takes the default or is required
    local _, errs = hooks.params(decls, '{"data":{"items":["x"]}}',
                                 { day = "/data/a~1b/m~0n", n = "/data/items/0" })
    assert.same({
      { pointer = "/data/a~1b/m~0n", detail = 'param "day" is required (no default)' },
      { pointer = "/data/items/0", detail = 'param "n": expected integer, got string' },
    }, errs)
  end)

  it("looks up RFC 6901 pointers", function()
    local doc = json.decode('{"foo":["bar","baz"],"":0,"a/b":1,"c%d":2,"e^f":3,"g|h":4,'
                            .. '"i\\\\j":5,"k\\"l":6," ":7,"m~n":8}')
    -- RFC 6901 section 5
    assert.equal(doc, hooks.lookup(doc, ""))
    assert.equal("bar", hooks.lookup(doc, "/foo/0"))
    assert.equal(0, hooks.lookup(doc, "/"))
    assert.equal(1, hooks.lookup(doc, "/a~1b"))
    assert.equal(2, hooks.lookup(doc, "/c%d"))
    assert.equal(5, hooks.lookup(doc, "/i\\j"))
    assert.equal(6, hooks.lookup(doc, '/k"l'))
    assert.equal(7, hooks.lookup(doc, "/ "))
    assert.equal(8, hooks.lookup(doc, "/m~0n"))
    assert.is_nil(hooks.lookup(doc, "/foo/01"))
    assert.is_nil(hooks.lookup(doc, "/foo/-"))
    assert.is_nil(hooks.lookup(doc, "/foo/2"))
    assert.is_nil(hooks.lookup(doc, "/foo/0/x"))
    -- ~01 is "~1", not "/"
    assert.equal(9, hooks.lookup(json.decode('{"~1":9}'), "/~01"))
    for _, bad in ipairs({ "foo", "/a~2", "/a~", "~" }) do
      assert.is_false(hooks.valid_pointer(bad))
    end
  end)
end)

describe("pipeline triggers.webhook", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() H.cleanup(dir) end)

  local function load(text)
    H.write(dir .. "/p.json", text)
    return pipeline.load(dir .. "/p.json")
  end
  local function with(webhook, extra)
    return load('{"name":"p","params":{"day":{"type":"string"}},"tasks":{"a":{"run":"return 1"}},'
                .. '"triggers":{"webhook":' .. webhook .. '}' .. (extra or "") .. '}')
  end

  it("accepts a reference, pointers and a window", function()
    local P = assert(with('{"secret":"${env:HOOK_SECRET}","params":{"day":"/data/day"},'
                          .. '"window":"2m"}'))
    assert.equal("${env:HOOK_SECRET}", P.def.triggers.webhook.secret)
    assert.is_truthy(with('{"secret":"${file:secrets/hook}"}'))
  end)

  it("refuses a literal secret, bad pointers, an undeclared param and a bad window, with paths",
     function()
    local _, errs = with('{"secret":"hunter2-literal","params":{"day":"data/day","x":"/x"},'
                         .. '"window":"0s"}')
    local msgs = pipeline.format_errors(errs)
    assert.matches("triggers%.webhook%.secret: must be a reference %${env:NAME} or %${file:PATH}", msgs)
    assert.not_matches("hunter2", msgs)
    assert.matches('triggers%.webhook%.params%.day: not a JSON pointer', msgs)
    assert.matches('triggers%.webhook%.params%.x: param "x" is not declared in params', msgs)
    assert.matches("triggers%.webhook%.window: must be between 1s and 1d", msgs)
    _, errs = with('{"secret":"${env:1BAD}"}')
    assert.matches("triggers%.webhook%.secret: must be a reference", pipeline.format_errors(errs))
    _, errs = with('{"secret":"${env:A}x"}')
    assert.matches("triggers%.webhook%.secret: must be a reference", pipeline.format_errors(errs))
  end)

  it("refuses unknown keys in triggers and in the webhook", function()
    local _, errs = with('{"secret":"${env:S}","token":"x"}')
    assert.matches("triggers%.webhook", pipeline.format_errors(errs))
    assert.matches("token", pipeline.format_errors(errs))
    _, errs = load('{"name":"p","tasks":{"a":{"run":"return 1"}},"triggers":{"cron":{}}}')
    assert.matches("triggers", pipeline.format_errors(errs))
    _, errs = with('{"params":{}}')
    assert.matches("secret", pipeline.format_errors(errs))
  end)
end)
