-- Redis from pipelines: tasks in sandboxed workers write and read a real
-- server through ctx.sink/ctx.source, and a server that is down gives a
-- clear error (without the password) and opens the breaker.
local H = require("helpers")

local REDIS = H.service("redis") or {}
local PORT, PW = REDIS.port, REDIS.password

-- weir.yaml: the connection "cache" to the server on port
local function yaml(port, extra)
  return H.yaml("redis", "cache", port, extra)
end

H.describe_with("redis", "Redis pipelines", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("writes rows with a sink and reads them back with SCAN and HSCAN", function()
    local prefix = "weirspec:" .. math.random(1, 1e9) .. ":"
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/p.lua", ([[
local P = %q
return pipeline { name = "redis_rt", tasks = {
  put = task { run = function(ctx)
    local rows = {}
    for i = 1, 3000 do rows[i] = { id = P .. i, name = "n" .. i, n = i } end
    return ctx.rows(rows):into(ctx.sink("cache"), "hset", { key = "id", ttl = 600 })
  end },
  get = task { after = { "put" }, run = function(ctx)
    local r = ctx.source("cache")
    local seen = ctx.source("cache"):scan(P .. "*", { count = 500 }):count()
    local fields = r:hscan(P .. "7"):collect()
    table.sort(fields, function(a, b) return a.field < b.field end)
    assert(r:command("HGET", P .. "42", "name") == "n42")
    assert(r:command("TTL", P .. "42") > 0)
    assert(r:command("GET", P .. "missing") == ctx.NULL)
    return { seen = seen, fields = #fields, first = fields[1].field }
  end },
} }]]):format(prefix))
    local code, _, err = H.weir(dir, "run p.lua", { WEIR_PW = PW })
    assert.equal(0, code, err)
    local run = H.show(dir, H.last_run(dir))
    local out = H.task(run, "get").output
    assert.same({ seen = 3000, fields = 2, first = "n" }, out)
    assert.equal(3000, H.task(run, "put").rows_out)
  end)

  it("keeps -0's sign in a hash and says a NULL value has no Redis form", function()
    local key = "weirspec:z:" .. math.random(1, 1e9)
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/p.lua", ([[
return pipeline { name = "redis_vals", tasks = {
  put = task { run = function(ctx)
    return ctx.rows({ { id = %q, z = -0.0, n = 1.5 } }):into(ctx.sink("cache"), "hset", { key = "id" })
  end },
  null = task { run = function(ctx)
    return ctx.rows({ { id = %q, v = ctx.NULL } }):into(ctx.sink("cache"), "set",
                                                       { key = "id", value = "v" })
  end },
} }]]):format(key, key .. ":s"))
    local code = H.weir(dir, "run p.lua", { WEIR_PW = PW })
    assert.equal(1, code)
    -- read outside weir
    local cli = "redis-cli -p " .. PORT .. " -a " .. H.q(PW) .. " --no-auth-warning -n 3 "
    assert.equal("-0", (H.output(cli .. "HGET " .. H.q(key) .. " z"):gsub("%s+$", "")))
    assert.equal("1.5", (H.output(cli .. "HGET " .. H.q(key) .. " n"):gsub("%s+$", "")))
    local t = H.task(H.show(dir, H.last_run(dir)), "null")
    assert.matches('value column "v" is NULL: Redis has no NULL', t.error, 1, true)
  end)

  it("replaces lists and streams instead of appending again when a load is retried", function()
    local base = "weirspec:rep:" .. math.random(1, 1e9)
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/p.lua", ([[
local B = %q
return pipeline { name = "redis_replace", tasks = { load = task { retries = 2, retry_delay = "10ms",
  run = function(ctx)
    local r = ctx.sink("cache")
    local rows = {}
    for i = 1, 2500 do rows[i] = { list = B .. ":l" .. (i %% 2), v = "v" .. i } end
    ctx.rows(rows):into(r, "rpush", { key = "list", value = "v", replace = true })
    ctx.rows({ { a = 1 }, { a = 2 } }):into(r, "xadd", { stream = B .. ":s", replace = true })
    if ctx.attempt < 3 then error("fail after the appends") end
    return "ok"
  end } } }]]):format(base))
    local code, _, err = H.weir(dir, "run p.lua", { WEIR_PW = PW })
    assert.equal(0, code, err)
    local cli = "redis-cli -p " .. PORT .. " -a " .. H.q(PW) .. " --no-auth-warning -n 3 "
    -- three attempts appended; each list and the stream hold one attempt's rows
    assert.equal("1250", (H.output(cli .. "LLEN " .. H.q(base .. ":l0")):gsub("%s+$", "")))
    assert.equal("1250", (H.output(cli .. "LLEN " .. H.q(base .. ":l1")):gsub("%s+$", "")))
    assert.equal("v1", (H.output(cli .. "LINDEX " .. H.q(base .. ":l1") .. " 0"):gsub("%s+$", "")))
    assert.equal("2", (H.output(cli .. "XLEN " .. H.q(base .. ":s")):gsub("%s+$", "")))
  end)

  it("fails clearly when Redis is down, without the password, and opens the breaker", function()
    -- a port where nothing listens
    local dead = tostring(20000 + math.random(0, 9999))
    H.write(dir .. "/weir.yaml", yaml(dead, "    breaker: { threshold: 1, open: 30s }\n"))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "redis_down", tasks = { t = task { retries = 2, retry_delay = "50ms",
  run = function(ctx) return ctx.source("cache"):command("PING") end } } }]])
    local canary = "canary-" .. math.random(1e6, 9e6)
    local code, out, err = H.weir(dir, "run p.lua", { WEIR_PW = canary })
    assert.equal(1, code)
    local run = H.show(dir, H.last_run(dir))
    local t = H.task(run, "t")
    assert.equal(3, t.attempts)
    assert.matches("cache", t.attempt_list[1].error)
    assert.matches("refused", t.attempt_list[1].error)
    assert.matches("circuit breaker open", t.attempt_list[2].error)
    local _, show = H.weir(dir, "show " .. run.run_id .. " --json", { WEIR_PW = canary })
    assert.is_nil((out .. err .. show):find(canary, 1, true))
    local hc, hj = H.weir(dir, "health --json", { WEIR_PW = canary })
    assert.equal(1, hc)
    assert.equal("open", require("weir.json").decode(hj).checks[2].breaker)
  end)
end)
