-- Lineage against the real PostgreSQL and Redis: a pipeline with no
-- lineage code reads and writes tables and keys through connections whose
-- passwords are in weir.yaml (one by ${env:}, one written in the URL);
-- the store and the OpenLineage events name every dataset as
-- postgres://HOST:PORT/DB/SCHEMA.TABLE or redis://HOST:PORT/DB/KEY, with
-- the server's own schema and the sink's columns and types, and no
-- credential appears anywhere.
local H = require("helpers")
local json = require("weir.json")

local PG = H.service("pg") or {}
local REDIS = H.service("redis") or {}

local function psql(sql)
  return H.output("psql " .. H.q(PG.url) .. " -Atqc " .. H.q(sql) .. " 2>&1"):gsub("%s+$", "")
end

local PIPE = [[
return pipeline {
  name = "lin",
  tasks = {
    copy = task { run = function(ctx)
      return ctx.source("wh")
        :query("SELECT s.id, s.email FROM lin_src s JOIN lin.ref r ON r.id = s.id WHERE s.id > $1",
               { 0 })
        :into(ctx.sink("wh"), "lin.dst", { mode = "replace" })
    end },
    cache = task { after = { "copy" }, run = function(ctx)
      return ctx.source("wh"):query("SELECT id, email FROM lin.dst")
        :map(function(r) r.k = "user:" .. r.id; return r end)
        :into(ctx.sink("cache"), "set", { key = "k" })
    end },
    check = task { after = { "cache" }, run = function(ctx)
      local one = ctx.source("wh"):rows("SELECT 1 AS x")
      return { keys = ctx.source("cache"):scan("user:*"):count(), one = one[1].x }
    end },
    -- a CSV file untouched goes to COPY as it is: the server reads it all
    raw = task { after = { "check" }, run = function(ctx)
      return ctx.csv("big.csv"):into(ctx.sink("wh"), "lin.big")
    end },
  },
}
]]

H.describe_with("pg", "lineage on PostgreSQL and Redis", function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    psql("DROP TABLE IF EXISTS lin_src; DROP SCHEMA IF EXISTS lin CASCADE; CREATE SCHEMA lin; "
         .. "CREATE TABLE lin_src (id integer PRIMARY KEY, email text NOT NULL); "
         .. "CREATE TABLE lin.ref (id integer); "
         .. "INSERT INTO lin_src VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x'); "
         .. "INSERT INTO lin.ref VALUES (1), (3)")
  end)
  after_each(function()
    psql("DROP TABLE IF EXISTS lin_src; DROP SCHEMA IF EXISTS lin CASCADE")
    H.cleanup(dir)
  end)

  it("never fails a task over a name it cannot resolve", function()
    -- PostgreSQL cuts identifiers at 63 bytes; weir refuses such a name
    -- for its own statements, but lineage keeps it as written
    local long = string.rep("t", 63)
    psql("DROP TABLE IF EXISTS " .. long .. "; CREATE TABLE " .. long .. " (id int); "
         .. "INSERT INTO " .. long .. " VALUES (1)")
    H.write(dir .. "/weir.yaml", H.yaml("pg", "wh", PG.port))
    H.write(dir .. "/p.lua", ([[
return pipeline { name = "longname", tasks = { t = task { run = function(ctx)
  return ctx.source("wh"):query("SELECT id FROM %sxxxx"):count()
end } } }]]):format(long))
    local code, _, err = H.weir(dir, "run p.lua", { WEIR_PW = PG.password })
    psql("DROP TABLE IF EXISTS " .. long)
    assert.equal(0, code, err)
    local _, out = H.weir(dir, "lineage --run " .. H.last_run(dir) .. " --json")
    local d = json.decode(out).datasets[1]
    assert.equal("postgres://127.0.0.1:" .. PG.port .. "/postgres/public." .. long .. "xxxx",
                 d.dataset)
    assert.equal(1, d.rows)
  end)

  it("records tables and keys by name, never a credential", function()
    if not REDIS.url then pending("needs Redis (WEIR_TEST_REDIS_URL)"); return end
    -- the Redis password written in weir.yaml itself, the PostgreSQL one
    -- by reference
    H.write(dir .. "/weir.yaml", H.yaml("pg", "wh", PG.port)
            .. string.format('  cache:\n    type: redis\n    url: "redis://:%s@127.0.0.1:%s/3"\n',
                             REDIS.password, REDIS.port)
            .. "openlineage:\n  transport: file\n  path: events.jsonl\n")
    H.write(dir .. "/p.lua", PIPE)
    local big = { "id,v" }
    for i = 1, 2500 do big[#big + 1] = i .. ",v" .. i end
    H.write(dir .. "/big.csv", table.concat(big, "\n") .. "\n")
    os.execute("redis-cli -p " .. REDIS.port .. " -a " .. H.q(REDIS.password)
               .. " --no-auth-warning -n 3 FLUSHDB >/dev/null")
    local code, _, err = H.weir(dir, "run p.lua", { WEIR_PW = PG.password })
    assert.equal(0, code, err)
    local run_id = H.last_run(dir)
    local _, out = H.weir(dir, "lineage --run " .. run_id .. " --json")
    local r = json.decode(out)
    local pg = "postgres://127.0.0.1:" .. PG.port .. "/postgres"
    local rd = "redis://127.0.0.1:" .. REDIS.port .. "/3"
    local got = {}
    for _, d in ipairs(r.datasets) do got[#got + 1] = d.task .. " " .. d.role .. " " .. d.dataset .. " " .. d.rows end
    assert.same({
      "copy input " .. pg .. "/public.lin_src 2",
      "copy input " .. pg .. "/lin.ref 2",
      "copy output " .. pg .. "/lin.dst 2",
      "cache input " .. pg .. "/lin.dst 2",
      "cache output " .. rd .. "/user:* 2",
      "check input " .. pg .. " 1",
      "check input " .. rd .. "/user:* 2",
      "raw input file:big.csv 2500",
      "raw output " .. pg .. "/lin.big 2500",
    }, got)
    assert.same({ { name = "id", type = "integer" }, { name = "email", type = "text" } },
                r.datasets[3].columns)
    assert.same({ { name = "email", type = "string" }, { name = "id", type = "integer" },
                  { name = "k", type = "string" } }, r.datasets[5].columns)
    -- the tree across the two stores
    local c2, tree = H.weir(dir, "lineage " .. H.q(rd .. "/user:*"))
    assert.equal(0, c2)
    assert.matches("written by lin.cache", tree, 1, true)
    assert.matches("reads " .. pg .. "/lin.dst", tree, 1, true)
    assert.matches("read by lin.check", tree, 1, true)
    -- a name as a user may write it (postgresql://, the user and password,
    -- no schema) is the same dataset
    local _, same = H.weir(dir, "lineage " .. H.q("postgresql://weir:x@127.0.0.1:" .. PG.port
                                                  .. "/postgres/lin_src") .. " --json")
    assert.equal("lin.copy", (function()
      local t = json.decode(same)
      return t.downstream[1].pipeline .. "." .. t.downstream[1].task
    end)())
    -- the events carry the same datasets in OpenLineage's naming
    local events = H.read(dir .. "/events.jsonl")
    local complete
    for l in events:gmatch("[^\n]+") do
      local ev = json.decode(l)
      if ev.eventType == "COMPLETE" and ev.job.name == "lin.copy" then complete = ev end
    end
    assert.same({ "postgres://127.0.0.1:" .. PG.port, "postgres.lin.dst" },
                { complete.outputs[1].namespace, complete.outputs[1].name })
    assert.same({ { name = "id", type = "integer" }, { name = "email", type = "text" } },
                complete.outputs[1].facets.schema.fields)
    -- no credential anywhere: names, events, the store, what the CLI shows
    local store = H.output("sqlite3 " .. H.q(dir .. "/.weir/weir.db") .. " .dump")
    assert.matches("/lin.dst", store, 1, true)
    local _, text = H.weir(dir, "lineage --run " .. run_id)
    for what, s in pairs({ events = events, store = store, json = out, text = text, tree = tree }) do
      for _, secret in ipairs({ PG.password, REDIS.password }) do
        assert.is_nil(s:find(secret, 1, true), what .. " holds a password")
      end
    end
    for _, d in ipairs(r.datasets) do
      assert.is_nil(d.dataset:find("@", 1, true), d.dataset)
      assert.is_nil(d.dataset:find("weir:", 1, true), d.dataset)
    end
  end)
end)
