-- The Redis connector against a real server: the one scripts/services.sh
-- starts (WEIR_TEST_REDIS_URL, _PORT, _PASSWORD), plus a private
-- redis-server this spec starts and restarts for the reconnect test.
local H = require("helpers")

local REDIS = H.service("redis") or {}
local URL, PORT, PASSWORD = REDIS.url, REDIS.port, REDIS.password

local native = require("weir._native")

local redis = require("weir.connectors.redis")
local F = require("weir._ffi")
local NULL = native.NULL -- ctx.NULL

local function now() return select(2, native.now()) end
local function sleep(s) H.succeeds("sleep " .. s) end

-- Every message the connector produced in this file, to check for secrets.
local messages = {}
local function seen(err)
  if err ~= nil then messages[#messages + 1] = tostring(err) end
  return err
end

local n_conn = 0
local function connect(extra)
  n_conn = n_conn + 1
  local opts = { host = "127.0.0.1", port = PORT, password = PASSWORD }
  for k, v in pairs(extra or {}) do opts[k] = v end
  if opts.password == false then opts.password = nil end
  local name = opts.name or ("spec" .. n_conn)
  opts.name = nil
  return assert(redis.connect(name, opts))
end

local function ok(v, err)
  seen(err)
  assert(v ~= nil, tostring(err))
  return v
end

local function drain(pull)
  local batches = {}
  while true do
    local b = pull()
    if b == nil then break end
    batches[#batches + 1] = b
  end
  return batches
end

H.describe_with("redis", "the redis connector", function()
  local r

  lazy_setup(function()
    r = connect({ name = "main", db = 9 })
    ok(r:command("FLUSHDB"))
  end)

  lazy_teardown(function()
    if r then
      r:command("FLUSHDB")
      r:close()
    end
  end)

  it("parses redis:// URLs", function()
    assert.same({ host = "10.0.0.5", port = 6380, db = 2, user = "app", password = "p@ss:w" },
                redis.parse_url("redis://app:p%40ss%3Aw@10.0.0.5:6380/2"))
    assert.same({ host = "::1", port = 6379, db = 0 }, redis.parse_url("redis://[::1]"))
    assert.same({ host = "127.0.0.1", port = 7, db = 0, password = "pw" },
                redis.parse_url("redis://:pw@127.0.0.1:7"))
    local v, err = redis.parse_url("rediss://127.0.0.1")
    assert.is_nil(v)
    assert.matches("TLS", err.message)
  end)

  describe("authentication", function()
    it("connects with the password from the URL", function()
      local o = assert(redis.parse_url(URL))
      assert.equal(PASSWORD, o.password)
      assert.equal(PORT, o.port)
      local c = assert(redis.connect("url", o))
      assert.equal("PONG", ok(c:command("PING")))
      local ms = ok(c:ping())
      assert.is_true(ms >= 0 and ms < 1000)
      c:close()
    end)

    it("authenticates as a named user (AUTH user password)", function()
      local c = connect({ user = "default" })
      assert.equal("default", ok(c:command("ACL", "WHOAMI")))
      c:close()
    end)

    it("refuses a wrong password with a clear error that never shows it", function()
      local wrong = "not-the-password-" .. tostring(os.time())
      local c = connect({ password = wrong })
      local v, err = c:command("PING")
      seen(err)
      assert.is_nil(v)
      assert.equal("denied", err.code)
      assert.is_false(err.transient)
      assert.matches('redis "spec%d+": authentication failed: WRONGPASS', err.message)
      assert.is_nil(tostring(err):find(wrong, 1, true))
      assert.is_nil(tostring(err):find(PASSWORD, 1, true))
      local ms, perr = c:ping()
      seen(perr)
      assert.is_nil(ms)
      assert.equal("denied", perr.code)
      assert.is_nil(tostring(perr):find(wrong, 1, true))
      c:close()
    end)

    it("reports NOAUTH when no password is given", function()
      local c = connect({ password = false })
      local v, err = c:command("GET", "x")
      seen(err)
      assert.is_nil(v)
      assert.equal("denied", err.code)
      assert.equal("NOAUTH", err.redis)
      c:close()
    end)
  end)

  it("selects the database index", function()
    local c3 = connect({ db = 3 })
    local c0 = connect({ db = 0 })
    ok(c3:command("SET", "spec:select", "three"))
    ok(c0:command("DEL", "spec:select"))
    assert.equal("three", ok(c3:command("GET", "spec:select")))
    assert.equal(NULL, ok(c0:command("GET", "spec:select")))
    ok(c3:command("DEL", "spec:select"))
    c3:close(); c0:close()
  end)

  describe("replies", function()
    it("map to Lua values", function()
      assert.equal("OK", ok(r:command("SET", "t:s", "v")))
      assert.equal(3, ok(r:command("APPEND", "t:s", "ww")))
      assert.equal(NULL, ok(r:command("GET", "t:missing")))
      assert.equal(require("weir.json").null, ok(r:command("GET", "t:missing")))
      ok(r:command("RPUSH", "t:l", "a", 2, 3.5))
      assert.same({ "a", "2", "3.5" }, ok(r:command("LRANGE", "t:l", 0, -1)))
      local mget = ok(r:command("MGET", "t:s", "t:missing"))
      assert.equal(2, #mget)
      assert.equal("vww", mget[1])
      assert.equal(NULL, mget[2])
      assert.equal(1e15 + 1, ok(r:command("INCRBY", "t:n", 1e15 + 1)))
      -- numbers as arguments: integers whole, others in the fewest digits
      ok(r:command("MSET", "t:f1", 0.1, "t:f2", 1e15, "t:f3", -2.5e-7, "t:f4", 1 / 3))
      assert.same({ "0.1", "1000000000000000", "-2.5e-07", "0.3333333333333333" },
                  ok(r:command("MGET", "t:f1", "t:f2", "t:f3", "t:f4")))
    end)

    it("return an error reply as nil, err with the Redis code", function()
      ok(r:command("SET", "t:str", "x"))
      local v, err = r:command("LPUSH", "t:str", "y")
      seen(err)
      assert.is_nil(v)
      assert.equal("sql", err.code)
      assert.equal("WRONGTYPE", err.redis)
      assert.is_false(err.transient)
      assert.matches('^redis "main": WRONGTYPE', tostring(err))
    end)

    it("are binary-safe", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local value = "a\0b\r\n" .. table.concat(bytes) .. "\0"
      local key = "t:bin\0key"
      ok(r:command("SET", key, value))
      local got = ok(r:command("GET", key))
      assert.equal(#value, #got)
      assert.equal(value, got)
      assert.equal(NULL, ok(r:command("GET", "t:bin")))
      ok(r:command("HSET", "t:binh", "f\0", value))
      assert.same({ "f\0", value }, ok(r:command("HGETALL", "t:binh")))
    end)

    it("raise on misuse, blaming the caller", function()
      assert.has_error(function() r:command("SET", "k", nil, "x") end)
      local ok2, msg = pcall(r.command, r, "SET", "k", {})
      assert.is_false(ok2)
      assert.matches("bad argument #2 to SET %(string or number expected, got table%)", msg)
      assert.has_error(function() r.command({}, "PING") end)
    end)
  end)

  describe("pipelines", function()
    it("send many commands over one connection, replies in order", function()
      local n = 2500 -- more than one window of 1000
      local before = r:stats().connects
      local res, err = r:pipeline(function(p)
        p:command("DEL", "p:ctr")
        for _ = 1, n do p:command("INCR", "p:ctr") end
      end)
      assert.is_nil(seen(err))
      assert.equal(n + 1, #res)
      for i = 1, n do assert.equal(i, res[i + 1]) end
      assert.is_true(r:stats().connects - before <= 1)
    end)

    it("keep MULTI/EXEC on one connection", function()
      local res = ok(r:pipeline({ { "MULTI" }, { "SET", "p:a", 1 }, { "INCR", "p:a" }, { "EXEC" } }))
      assert.same({ "OK", "QUEUED", "QUEUED", { "OK", 2 } }, res)
    end)

    it("put an error reply in its slot and return the first one", function()
      ok(r:command("SET", "p:s", "x"))
      local res, err = r:pipeline({ { "GET", "p:s" }, { "INCR", "p:s" }, { "LPUSH", "p:s", 1 }, { "PING" } })
      seen(err)
      assert.equal(4, #res)
      assert.equal("x", res[1])
      assert.is_true(redis.is_error(res[2]))
      assert.equal(err, res[2])
      assert.equal("ERR", err.redis)
      assert.equal("WRONGTYPE", res[3].redis)
      assert.equal("PONG", res[4])
    end)

    it("accept an empty list", function()
      assert.same({}, ok(r:pipeline({})))
    end)
  end)

  describe("pulls", function()
    local N = 5000

    it("scan every key once, in bounded batches", function()
      local rows = {}
      for i = 1, N do rows[i] = { k = "scan:" .. i, v = tostring(i) } end
      assert.equal(N, ok(r:write("set", rows, { key = "k", value = "v" })))
      ok(r:command("SET", "other:1", "x"))
      local keys, count = {}, 0
      for _, b in ipairs(drain(r:scan_pull("scan:*", 300, 700))) do
        assert.is_true(#b >= 1 and #b <= 700)
        for _, row in ipairs(b) do
          assert.is_nil(keys[row.key], "key seen twice: " .. row.key)
          keys[row.key] = true
          count = count + 1
        end
      end
      assert.equal(N, count)
      for i = 1, N do assert.is_true(keys["scan:" .. i]) end
    end)

    it("hscan every field once with its value", function()
      local args = { "HSET", "h:big" }
      for i = 1, N do args[#args + 1] = "f" .. i; args[#args + 1] = "v" .. i end
      ok(r:pipeline({ args })) -- 10002 arguments: more than unpack takes
      local got, count = {}, 0
      for _, b in ipairs(drain(r:hscan_pull("h:big", 600))) do
        assert.is_true(#b <= 600)
        for _, row in ipairs(b) do
          assert.is_nil(got[row.field])
          got[row.field] = row.value
          count = count + 1
        end
      end
      assert.equal(N, count)
      for i = 1, N do assert.equal("v" .. i, got["f" .. i]) end
    end)

    it("xrange every entry once, in order, with its fields", function()
      local rows = {}
      for i = 1, N do rows[i] = { n = i, name = "e" .. i } end
      assert.equal(N, ok(r:write("xadd", rows, { stream = "x:big" })))
      local pull = r:xrange_pull("x:big", nil, nil, 999)
      local all, sizes = {}, {}
      for _, b in ipairs(drain(pull)) do
        sizes[#sizes + 1] = #b
        for _, row in ipairs(b) do all[#all + 1] = row end
      end
      assert.equal(N, #all)
      assert.same({ 999, 999, 999, 999, 999, 5 }, sizes)
      for i = 1, N do
        assert.equal(tostring(i), all[i].n)
        assert.equal("e" .. i, all[i].name)
        assert.is_string(all[i].id)
      end
      assert.is_nil(pull()) -- stays at the end
      -- a sub-range by ids
      local sub = drain(r:xrange_pull("x:big", all[10].id, all[19].id, 4))
      assert.same({ 4, 4, 2 }, { #sub[1], #sub[2], #sub[3] })
      assert.equal("10", sub[1][1].n)
    end)

    it("raise the error when the server refuses, noted as not retryable", function()
      ok(r:command("SET", "x:str", "s"))
      local pull = r:xrange_pull("x:str")
      local good, err = pcall(pull)
      assert.is_false(good)
      assert.matches('^redis "main": WRONGTYPE', err)
      assert.is_true(require("weir.errors").permanent(err))
      good, err = pcall(r:scan_pull(nil, 10, 10)) -- fine
      assert.is_true(good, err)
    end)

    it("end at once on an empty hash or stream", function()
      assert.is_nil(r:hscan_pull("h:none")())
      assert.is_nil(r:xrange_pull("x:none")())
    end)
  end)

  describe("sinks", function()
    local function ttl(key) return ok(r:command("TTL", key)) end

    it("set: key and value columns, TTL", function()
      local rows = { { id = 1, name = "ann" }, { id = 2, name = "bob" } }
      assert.equal(2, ok(r:write("set", rows, { key = "id", value = "name", ttl = 100 })))
      assert.equal("ann", ok(r:command("GET", "1")))
      assert.equal("bob", ok(r:command("GET", "2")))
      local t = ttl("2")
      assert.is_true(t > 90 and t <= 100)
      -- no value column: the row as JSON
      ok(r:write("set", { { k = "s:json", a = 1, b = "x" } }, { key = "k" }))
      assert.equal('{"a":1,"b":"x","k":"s:json"}', ok(r:command("GET", "s:json")))
      -- a NULL column (ctx.NULL, as a database row carries it) is JSON null
      ok(r:write("set", { { k = "s:null", a = NULL } }, { key = "k" }))
      assert.equal('{"a":null,"k":"s:null"}', ok(r:command("GET", "s:null")))
      assert.equal(-1, ttl("s:json"))
    end)

    it("hset: remaining or chosen columns as fields, TTL via EXPIRE", function()
      local rows = { { user = "u:1", name = "ann", age = 31, admin = true },
                     { user = "u:2", name = "bob", age = 42 } }
      assert.equal(2, ok(r:write("hset", rows, { key = "user", ttl = 60 })))
      local h = ok(r:command("HGETALL", "u:1"))
      assert.same({ "admin", "true", "age", "31", "name", "ann" }, h)
      local t = ttl("u:2")
      assert.is_true(t > 50 and t <= 60)
      ok(r:write("hset", { { user = "u:3", name = "cy", age = 5 } }, { key = "user", fields = { "name" } }))
      assert.same({ "name", "cy" }, ok(r:command("HGETALL", "u:3")))
      assert.equal(-1, ttl("u:3"))
    end)

    it("rpush: a fixed list or a key column, value column or JSON, TTL", function()
      local rows = {}
      for i = 1, 2500 do rows[i] = { q = i % 2 == 0 and "l:even" or "l:odd", v = i } end
      assert.equal(2500, ok(r:write("rpush", rows, { list = "l:all", value = "v", ttl = 30 })))
      assert.equal(2500, ok(r:command("LLEN", "l:all")))
      assert.same({ "1", "2", "3" }, ok(r:command("LRANGE", "l:all", 0, 2)))
      assert.is_true(ttl("l:all") > 20)
      assert.equal(2500, ok(r:write("rpush", rows, { key = "q", ttl = 40 })))
      assert.equal(1250, ok(r:command("LLEN", "l:even")))
      assert.equal('{"q":"l:odd","v":1}', ok(r:command("LINDEX", "l:odd", 0)))
      assert.is_true(ttl("l:even") > 30 and ttl("l:odd") <= 40)
    end)

    it("xadd: row columns as fields, MAXLEN, TTL", function()
      local rows = {}
      for i = 1, 300 do rows[i] = { n = i } end
      assert.equal(300, ok(r:write("xadd", rows, { stream = "x:cap", maxlen = 100, exact = true, ttl = 20 })))
      assert.equal(100, ok(r:command("XLEN", "x:cap")))
      local t = ttl("x:cap")
      assert.is_true(t > 10 and t <= 20)
      local last = ok(r:command("XREVRANGE", "x:cap", "+", "-", "COUNT", 1))
      assert.same({ "n", "300" }, last[1][2])
    end)

    it("refuse a bad row before writing anything", function()
      ok(r:command("DEL", "bad:1"))
      local v, err = r:write("set", { { k = "bad:1", v = "x" }, { v = "y" } }, { key = "k", value = "v" })
      seen(err)
      assert.is_nil(v)
      assert.equal("invalid", err.code)
      assert.matches('row 2: key column "k" is missing', err.message)
      assert.equal(NULL, ok(r:command("GET", "bad:1")))
      assert.has_error(function() r:write("upsert", {}, {}) end)
      assert.has_error(function() r:write("rpush", { {} }, { key = "a", list = "b" }) end)
    end)

    it("report the row of a refused command", function()
      ok(r:command("SET", "h:taken", "x"))
      local v, err = r:write("hset", { { k = "h:ok", a = 1 }, { k = "h:taken", a = 2 } }, { key = "k" })
      seen(err)
      assert.is_nil(v)
      assert.equal("WRONGTYPE", err.redis)
      assert.equal(2, err.row)
    end)
  end)

  describe("limits", function()
    it("refuse a reply larger than max_reply with a clear error, then recover", function()
      local c = connect({ db = 9, max_reply = 1024 * 1024 })
      ok(c:command("SET", "big:1", string.rep("x", 2 * 1024 * 1024)))
      local v, err = c:command("GET", "big:1")
      seen(err)
      assert.is_nil(v)
      assert.equal("limit", err.code)
      assert.matches("reply larger than max_reply_bytes %(1048576%)", err.message)
      assert.equal("PONG", ok(c:command("PING")))
      -- many small elements count too
      local args = { "RPUSH", "big:l" }
      for i = 1, 50000 do args[#args + 1] = "element-" .. i end
      ok(c:pipeline({ args }))
      local l, lerr = c:command("LRANGE", "big:l", 0, -1)
      seen(lerr)
      assert.is_nil(l)
      assert.equal("limit", lerr.code)
      assert.equal(1000, #ok(c:command("LRANGE", "big:l", 0, 999)))
      ok(c:command("DEL", "big:1", "big:l"))
      c:close()
    end)

    it("time out a blocking command past the command timeout", function()
      local c = connect({ db = 9, timeout = 300 })
      local t0 = now()
      local v, err = c:command("BLPOP", "t:never", 5)
      local took = now() - t0
      seen(err)
      assert.is_nil(v)
      assert.equal("timeout", err.code)
      assert.is_true(err.transient)
      assert.matches("no reply within 300 ms", err.message)
      assert.is_true(took >= 250 and took < 2000, "took " .. took .. " ms")
      local s = c:stats()
      assert.equal(0, s.open) -- the timed-out connection was dropped
      assert.equal("PONG", ok(c:command("PING")))
      c:close()
    end)

    it("time out a connect to an address that does not answer", function()
      -- TEST-NET-1 (RFC 5737) is not routed: the SYN goes nowhere
      local c = assert(redis.connect("blackhole", { host = "192.0.2.1", port = 6379, connect_timeout = 200 }))
      local t0 = now()
      local v, err = c:command("PING")
      seen(err)
      assert.is_nil(v)
      assert.is_true(err.transient)
      if err.code == "timeout" then
        assert.is_true(now() - t0 < 2000)
      else
        assert.equal("io", err.code) -- no route at all in this sandbox
      end
      c:close()
    end)

    it("refuses a host name (names are resolved by the caller)", function()
      local v, err = redis.connect("named", { host = "localhost", port = PORT })
      assert.is_nil(v)
      assert.equal("invalid", err.code)
      assert.matches("numeric IP", err.message)
    end)
  end)

  describe("the pool", function()
    it("is one per name: same options share it, new options replace it", function()
      local a = connect({ name = "shared", db = 9 })
      ok(a:command("PING"))
      local b = connect({ name = "shared", db = 9 })
      ok(b:command("PING"))
      assert.equal(1, b:stats().connects)
      assert.equal(1, a:stats().idle)
      local c = connect({ name = "shared", db = 8 })
      assert.is_true(a:stats().retired)
      assert.equal(0, a:stats().open)
      assert.is_false(c:stats().retired)
      ok(a:command("PING")) -- an old handle still works
      assert.equal(0, a:stats().open)
      a:close(); b:close(); c:close()
      c:close() -- twice is fine
      assert.has_error(function() c:command("PING") end)
    end)

    it("keeps its connections for later handles (later attempts)", function()
      local a = connect({ name = "kept", db = 9 })
      ok(a:command("PING"))
      a:close()
      collectgarbage()
      local b = connect({ name = "kept", db = 9 })
      ok(b:command("PING"))
      assert.same({ open = 1, idle = 1, in_use = 0, retired = false, connects = 1, dropped = 0 }, b:stats())
      b:close()
      assert.is_true(redis.drop("kept"))
      assert.is_false(redis.drop("kept"))
    end)

    it("closes connections past their idle timeout and lifetime", function()
      local c = connect({ db = 9, pool = { idle_timeout = 300, max_lifetime = 600 } })
      ok(c:command("PING"))
      sleep(0.4) -- idle too long
      ok(c:command("PING"))
      local s = c:stats()
      assert.equal(2, s.connects)
      assert.equal(1, s.dropped)
      sleep(0.2); ok(c:command("PING"))
      sleep(0.2); ok(c:command("PING"))
      assert.equal(2, c:stats().connects)
      sleep(0.2); ok(c:command("PING")) -- now older than 600 ms
      s = c:stats()
      assert.equal(3, s.connects)
      assert.equal(2, s.dropped)
      c:close()
    end)

    it("keeps pool.min connections past the idle timeout", function()
      local c = connect({ db = 9, pool = { min = 1, max = 4, idle_timeout = 100 } })
      ok(c:command("PING"))
      sleep(0.3) -- idle too long, but the pool keeps its minimum
      ok(c:command("PING"))
      assert.equal(1, c:stats().connects)
      assert.equal(0, c:stats().dropped)
      c:close()
    end)

    it("PINGs a connection idle past validate_idle, and replaces one the server closed", function()
      local c = connect({ db = 9, pool = { validate_idle = 1 } })
      local id = ok(c:command("CLIENT", "ID"))
      sleep(0.05)
      assert.equal(id, ok(c:command("CLIENT", "ID"))) -- validated, kept
      ok(r:command("CLIENT", "KILL", "ID", id))
      sleep(0.05)
      assert.is_true(ok(c:command("CLIENT", "ID")) > id)
      local s = c:stats()
      assert.equal(2, s.connects)
      assert.equal(1, s.dropped)
      c:close()
    end)
  end)

  describe("a server restart", function()
    local dir, port, pidfile

    local function start()
      os.execute(string.format(
        "redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize yes" ..
        " --dir %s --pidfile %s --logfile %s/redis.log", port, H.q(dir), H.q(pidfile), H.q(dir)))
      return H.wait_for(function()
        local p = H.read(pidfile)
        return p and p:match("%d+") and H.succeeds("redis-cli -p " .. port .. " ping >/dev/null 2>&1")
      end, 10)
    end

    local function stop()
      local pid = H.read(pidfile)
      pid = pid and pid:match("%d+")
      if not pid then return end
      H.succeeds("kill " .. pid)
      H.wait_for(function() return not H.succeeds("kill -0 " .. pid .. " 2>/dev/null") end, 10)
      os.remove(pidfile)
    end

    lazy_setup(function()
      dir = H.tmpdir()
      pidfile = dir .. "/redis.pid"
      math.randomseed(os.time())
      for _ = 1, 5 do
        port = 20000 + math.random(0, 29999)
        if start() then return end
      end
      error("could not start a private redis-server")
    end)

    lazy_teardown(function()
      stop()
      H.cleanup(dir)
    end)

    it("fails transiently while down and reconnects once it is back", function()
      local c = assert(redis.connect("restart", { host = "127.0.0.1", port = port, timeout = 2000 }))
      assert.equal("OK", ok(c:command("SET", "k", "before")))
      stop()
      local v, err = c:command("GET", "k")
      seen(err)
      assert.is_nil(v)
      assert.is_true(err.transient)
      assert.is_true(err.code == "io" or err.code == "closed", err.code)
      assert.matches('redis "restart"', err.message)
      local good, msg = pcall(c:scan_pull())
      assert.is_false(good)
      assert.is_true(require("weir.errors").is(msg))
      assert.is_true(msg.transient)
      assert.truthy(start())
      -- no data survives (--save ""), but the connection does
      assert.equal(NULL, ok(c:command("GET", "k")))
      assert.equal("OK", ok(c:command("SET", "k", "after")))
      -- a restart while a connection sits idle in the pool: the next call
      -- sees the closed socket and connects again, without an error
      stop()
      assert.truthy(start())
      local before = c:stats().connects
      assert.equal(NULL, ok(c:command("GET", "k")))
      assert.equal(before + 1, c:stats().connects)
      c:close()
    end)
  end)

  it("never put the password in an error message", function()
    assert.is_true(#messages > 5)
    for _, m in ipairs(messages) do
      assert.is_nil(m:find(PASSWORD, 1, true), m)
    end
  end)

  it("leaves no connection checked out", function()
    assert.equal(0, r:stats().in_use)
    assert.is_true(F.C.weir_ffi_redis_live_pools() >= 1)
  end)
end)
