-- PostgreSQL from pipelines: real `weir run` processes, tasks in sandboxed
-- workers reaching the server through the connect broker, weir.yaml with
-- secrets by reference, and the faults: a worker SIGKILLed in the middle of
-- a COPY, the server restarted during a run, a wrong password, an
-- endpoint that is not configured.
local H = require("helpers")

local PG = H.service("pg") or {}
local URL, PORT, PW = PG.url, PG.port, PG.password

local function psql(url, sql)
  return H.output("psql " .. H.q(url) .. " -Atqc " .. H.q(sql) .. " 2>&1"):gsub("%s+$", "")
end

-- weir.yaml: the connection "wh" to the server on port
local function yaml(port, extra)
  return H.yaml("pg", "wh", port, extra)
end

-- weir with the password in the environment only (never on a command line)
local function weir(dir, args, pw)
  return H.weir(dir, args, { WEIR_PW = pw or PW })
end

H.describe_with("pg", "PostgreSQL pipelines", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("loads exactly once when a worker is SIGKILLed in the middle of a COPY", function()
    psql(URL, "DROP TABLE IF EXISTS killed_dst")
    H.write(dir .. "/weir.yaml", yaml(PORT))
    -- attempt 1 slows down half way through the rows: its deadline SIGKILLs
    -- the worker while the COPY transaction is open; attempt 2 runs through
    H.write(dir .. "/p.lua", [[
return pipeline {
  name = "killcopy",
  tasks = {
    load = task {
      timeout = "4s", retries = 3, retry_delay = "100ms",
      run = function(ctx)
        local rows = {}
        for i = 1, 100000 do rows[i] = { id = i, v = "row" .. i } end
        local n = 0
        return ctx.rows(rows, { columns = { "id", "v" } })
          :map(function(r)
            n = n + 1
            if ctx.attempt == 1 and n > 50000 then while true do end end
            return r
          end)
          :into(ctx.sink("wh"), "killed_dst", { mode = "append", key = "id" })
      end,
    },
  },
}]])
    local code, _, err = weir(dir, "run p.lua")
    assert.equal(0, code, err)
    local run = H.show(dir, H.last_run(dir))
    local t = H.task(run, "load")
    -- attempt 1 was killed; a later one (slow builds may need two) loaded
    assert.is_true(t.attempts >= 2)
    assert.matches("timed out", t.attempt_list[1].error)
    assert.equal("100000|100000|1|100000",
                 psql(URL, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM killed_dst"))
  end)

  it("creates a copy's table with the source's type modifiers, and copies it exactly", function()
    psql(URL, "DROP TABLE IF EXISTS tm_src, tm_dst; CREATE TABLE tm_src (c char(5), b bit(3), "
              .. "n numeric(10,2), v varchar(7), t timestamp(3)); "
              .. "INSERT INTO tm_src VALUES ('ab', B'101', 12.5, 'seven77', '2026-01-02 03:04:05.678'), "
              .. "(NULL, NULL, NULL, NULL, NULL)")
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "typmods", tasks = { copy = task { run = function(ctx)
  local db = ctx.source("wh")
  return db:query("SELECT * FROM tm_src"):into(ctx.sink("wh"), "tm_dst")
end } } }]])
    local code, _, err = weir(dir, "run p.lua")
    assert.equal(0, code, err)
    local types = "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) "
                  .. "FROM pg_attribute WHERE attrelid = '%s'::regclass AND attnum > 0"
    assert.equal("character(5),bit(3),numeric(10,2),character varying(7),timestamp(3) without time zone",
                 psql(URL, types:format("tm_dst")))
    assert.equal("0", psql(URL, "SELECT count(*) FROM ((TABLE tm_src EXCEPT ALL TABLE tm_dst) "
                             .. "UNION ALL (TABLE tm_dst EXCEPT ALL TABLE tm_src)) d"))
  end)

  it("refuses upsert rows with a NULL key, at once, leaving the table as it was", function()
    psql(URL, "DROP TABLE IF EXISTS nullkey_dst; CREATE TABLE nullkey_dst (id int, v text); "
              .. "CREATE UNIQUE INDEX ON nullkey_dst (id); INSERT INTO nullkey_dst VALUES (1, 'old')")
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "nullkey", tasks = { load = task { retries = 2, retry_delay = "10ms",
  run = function(ctx)
    return ctx.rows({ { id = 1, v = "new" }, { id = ctx.NULL, v = "x" }, { id = ctx.NULL, v = "y" } },
                    { columns = { "id", "v" } })
      :into(ctx.sink("wh"), "nullkey_dst", { mode = "upsert", key = "id" })
  end } } }]])
    local code = weir(dir, "run p.lua")
    assert.equal(1, code)
    local t = H.task(H.show(dir, H.last_run(dir)), "load")
    assert.equal(1, t.attempts)
    assert.matches('upsert into "nullkey_dst": 2 row(s) have a NULL key (id)', t.error, 1, true)
    assert.equal("1|old", psql(URL, "SELECT id, v FROM nullkey_dst"))
  end)

  it("keeps the load ledger beside the target table, not in search_path's first schema", function()
    -- a role of its own, whose search_path starts with ledg_a
    psql(URL, "DROP SCHEMA IF EXISTS ledg_a CASCADE")
    psql(URL, "DROP SCHEMA IF EXISTS ledg_b CASCADE")
    psql(URL, "DROP TABLE IF EXISTS public.t2")
    psql(URL, "DROP ROLE IF EXISTS ledg_user")
    psql(URL, "CREATE ROLE ledg_user LOGIN PASSWORD 'ledgpw'; "
              .. "CREATE SCHEMA ledg_a AUTHORIZATION ledg_user; "
              .. "CREATE SCHEMA ledg_b AUTHORIZATION ledg_user; "
              .. "ALTER ROLE ledg_user SET search_path = ledg_a, public")
    H.write(dir .. "/weir.yaml", ([[
connections:
  wh:
    type: postgres
    url: "postgres://ledg_user:${env:WEIR_PW}@127.0.0.1:%s/postgres"
    sslmode: disable
]]):format(PORT))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "ledger", tasks = { load = task { run = function(ctx)
  ctx.rows({ { id = 1 } }):into(ctx.sink("wh"), "ledg_b.t1")
  return ctx.rows({ { id = 2 } }):into(ctx.sink("wh"), "t2")
end } } }]])
    local code, _, err = weir(dir, "run p.lua", "ledgpw")
    assert.equal(0, code, err)
    local run_id = H.last_run(dir)
    -- the qualified target's ledger is in its schema; the unqualified one
    -- went where search_path created t2, and so did its ledger
    assert.equal('"ledg_b"."t1"', psql(URL, "SELECT target FROM ledg_b._weir_loads WHERE run_id = '"
                                       .. run_id .. "'"))
    assert.equal("1", psql(URL, "SELECT count(*) FROM ledg_a.t2"))
    assert.equal('"t2"', psql(URL, "SELECT target FROM ledg_a._weir_loads WHERE run_id = '"
                                .. run_id .. "'"))
    assert.equal("1", psql(URL, "SELECT count(*) FROM ledg_a._weir_fence WHERE run_id = '"
                             .. run_id .. "'"))
    assert.equal("0", psql(URL, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND "
                             .. "tablename = '_weir_loads' AND EXISTS (SELECT 1 FROM public._weir_loads "
                             .. "WHERE run_id = '" .. run_id .. "')"))
  end)

  it("never shows a weir.yaml secret in output, errors, logs or the store", function()
    local canary = "Canary" .. math.random(100000, 999999) .. "pw"
    psql(URL, "DROP ROLE IF EXISTS canary_role; CREATE ROLE canary_role LOGIN PASSWORD '" .. canary .. "'")
    H.write(dir .. "/weir.yaml", ([[
connections:
  good:
    type: postgres
    url: "postgres://canary_role:${env:WEIR_PW}@127.0.0.1:%s/postgres"
    sslmode: disable
  bad:
    type: postgres
    host: 127.0.0.1
    port: %s
    user: canary_role
    password: "${env:WEIR_PW}-wrong"
    database: postgres
    sslmode: disable
]]):format(PORT, PORT))
    H.write(dir .. "/p.lua", [[
return pipeline {
  name = "canary",
  tasks = {
    ok = task { run = function(ctx)
      local r = ctx.source("good"):rows("SELECT current_user AS u")
      ctx.log("connected as %s", r[1].u)
      return r[1].u
    end },
    wrong = task { retries = 0, run = function(ctx)
      return ctx.source("bad"):rows("SELECT 1 AS one")
    end },
  },
}]])
    local code, out, err = weir(dir, "run p.lua", canary)
    assert.equal(1, code)
    local run_id = H.last_run(dir)
    local _, show = weir(dir, "show " .. run_id, canary)
    local _, show_json = weir(dir, "show " .. run_id .. " --json", canary)
    local _, health = weir(dir, "health --json", canary)
    local all = out .. err .. show .. show_json .. health
    assert.matches("password authentication failed", all)
    assert.matches("canary_role", all)
    assert.is_nil(all:find(canary, 1, true), "the canary leaked into output")
    -- and not in the store, in any form
    local db = H.output("cat " .. H.q(dir .. "/.weir") .. "/weir.db* 2>/dev/null")
    assert.is_true(#db > 0)
    assert.is_nil(db:find(canary, 1, true), "the canary leaked into the store")
    psql(URL, "DROP ROLE IF EXISTS canary_role")
  end)

  it("masks URL passwords in stored outputs, but hands downstream tasks the output as returned", function()
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "outmask", tasks = {
  a = task { run = function() return { url = "postgres://app:hunter22@db.example/app" } end },
  b = task { after = { "a" }, run = function(ctx) return #ctx.inputs.a.url end },
} }]])
    assert.equal(0, (weir(dir, "run p.lua")))
    local run_id = H.last_run(dir)
    local _, show = weir(dir, "show " .. run_id .. " --json")
    assert.is_nil(show:find("hunter22", 1, true))
    local run = require("weir.json").decode(show)
    assert.equal(#"postgres://app:hunter22@db.example/app", H.task(run, "b").output)
  end)

  it("fails a SQL error at once, without retries, naming connection and SQLSTATE", function()
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "syntax", tasks = { q = task { retries = 3, run = function(ctx)
  return ctx.source("wh"):exec("SELEC 1")
end } } }]])
    local code = weir(dir, "run p.lua")
    assert.equal(1, code)
    local run = H.show(dir, H.last_run(dir))
    local t = H.task(run, "q")
    assert.equal(1, t.attempts)
    assert.matches("postgres wh: %[42601%]", t.attempt_list[1].error)
  end)

  it("decides retries on the error's transient: a refused connection is retried, a "
     .. "syntax error caught and raised again is not", function()
    -- nothing listens on port 1: the connection is refused (transient)
    H.write(dir .. "/weir.yaml", yaml(1) .. yaml(PORT):gsub("^connections:\n", ""):gsub("wh:", "ok:"))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "verdicts", tasks = {
  refused = task { retries = 2, retry_delay = "10ms", run = function(ctx)
    return ctx.source("wh"):exec("SELECT 1")
  end },
  rethrown = task { retries = 2, retry_delay = "10ms", run = function(ctx)
    local ok, e = pcall(function() return ctx.source("ok"):exec("SELEC 1") end)
    assert(not ok and e.sqlstate == "42601" and e.transient == false and e.code == "sql")
    error(e, 0)
  end } } }]])
    local code = weir(dir, "run p.lua")
    assert.equal(1, code)
    local run = H.show(dir, H.last_run(dir))
    local refused = H.task(run, "refused")
    assert.equal(3, refused.attempts)
    assert.matches("postgres wh: ", refused.attempt_list[1].error)
    local rethrown = H.task(run, "rethrown")
    assert.equal(1, rethrown.attempts)
    assert.matches("postgres ok: %[42601%]", rethrown.attempt_list[1].error)
  end)

  it("commits and rolls back explicit transactions; a deadline stops the server's statement", function()
    psql(URL, "DROP TABLE IF EXISTS txs; CREATE TABLE txs (v int)")
    H.write(dir .. "/weir.yaml", yaml(PORT))
    local tag = "weir_cancel_" .. math.random(1, 1e9)
    H.write(dir .. "/p.lua", ([[
return pipeline { name = "tx", tasks = {
  tx = task { run = function(ctx)
    local db = ctx.source("wh")
    local t = db:begin()
    t:exec("INSERT INTO txs VALUES ($1)", { 1 })
    t:rollback()
    t = db:begin()
    t:exec("INSERT INTO txs VALUES ($1)", { 2 })
    t:commit()
    local ok = pcall(t.exec, t, "INSERT INTO txs VALUES (3)")
    assert(not ok, "a finished transaction refuses statements")
    t = db:begin()
    t:exec("INSERT INTO txs VALUES ($1)", { 4 })   -- left open: rolled back at the end
    return db:rows("SELECT count(*) AS n FROM txs")[1].n
  end },
  slow = task { timeout = "1s", retries = 0, run = function(ctx)
    ctx.source("wh"):exec("SELECT pg_sleep(60) /* %s */")
  end },
} }]]):format(tag))
    local code = weir(dir, "run p.lua")
    assert.equal(1, code)
    local run = H.show(dir, H.last_run(dir))
    assert.equal("success", H.task(run, "tx").state)
    assert.equal(1, H.task(run, "tx").output)
    assert.equal("2", psql(URL, "SELECT string_agg(v::text, ',') FROM txs"))
    assert.matches("timed out", H.task(run, "slow").attempt_list[1].error)
    -- the worker was SIGKILLed; the server notices and stops the query
    local gone = H.wait_for(function()
      return psql(URL, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%" .. tag
                       .. "%' AND pid <> pg_backend_pid()") == "0"
    end, 10)
    assert.truthy(gone, "the statement of the killed attempt still runs")
  end)

  it("resets a pooled connection's session between attempts", function()
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "reset", tasks = {
  a = task { run = function(ctx)
    local db = ctx.source("wh")
    db:exec("SET TimeZone TO 'America/New_York'")
    db:exec("SET search_path TO pg_catalog")
    db:exec("SET extra_float_digits TO -3")
    return db:rows("SHOW TimeZone")[1].TimeZone
  end },
  b = task { after = { "a" }, run = function(ctx)
    local r = ctx.source("wh"):rows("SELECT current_setting('TimeZone') AS tz, current_schema() AS s, "
                                    .. "current_setting('extra_float_digits') AS d")[1]
    return r.tz .. " " .. r.s .. " " .. r.d
  end },
} }]])
    local code, _, err = weir(dir, "run p.lua --workers 1")
    assert.equal(0, code, err)
    local run = H.show(dir, H.last_run(dir))
    assert.equal("America/New_York", H.task(run, "a").output)
    assert.equal("UTC public 3", H.task(run, "b").output)
  end)

  it("checks the store and connections with weir health", function()
    H.write(dir .. "/weir.yaml", yaml(PORT) .. [[
  down:
    type: postgres
    host: 127.0.0.1
    port: 1
    user: weir
    database: postgres
    connect_timeout: 2s
]])
    local code, out = weir(dir, "health")
    assert.equal(1, code)
    assert.matches("ok%s+metadata", out)
    assert.matches("ok%s+postgres%s+wh", out)
    assert.matches("FAIL%s+postgres%s+down", out)
    local c2, j = weir(dir, "health --json")
    assert.equal(1, c2)
    local res = require("weir.json").decode(j)
    assert.is_false(res.ok)
    assert.equal("closed", res.checks[2].breaker)
  end)
end)

H.describe_with("pg", "PostgreSQL restarted during a run", function()
  local dir, svc
  setup(function() svc = H.private_service("pg") end)
  teardown(function() svc.stop() end)
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("retries through the restart; the breaker opens, then closes", function()
    local pw = svc.password
    H.write(dir .. "/weir.yaml", yaml(svc.port, [[
    breaker: { threshold: 1, window: 10s, open: 1500ms }
]]))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "restart", tasks = { slow = task {
  retries = 6, retry_delay = "300ms",
  run = function(ctx)
    ctx.source("wh"):exec("SELECT pg_sleep(3)")
    return "done"
  end } } }]])
    local log = dir .. "/run.log"
    local pid = H.spawn(dir, "run p.lua", log, { WEIR_PW = pw })
    os.execute("sleep 1")
    assert.is_true(svc.restart())
    assert.truthy(H.wait_dead(pid, 60))
    local run = H.show(dir, H.last_run(dir))
    assert.equal("success", run.status, H.read(log))
    local errors = {}
    for _, a in ipairs(H.task(run, "slow").attempt_list) do errors[#errors + 1] = a.error or "" end
    local all = table.concat(errors, "\n")
    assert.matches("postgres wh: %[", all)               -- the restart broke attempt 1
    assert.matches("circuit breaker open", all)          -- then the breaker failed fast
    local _, out = H.weir(dir, "health --json", { WEIR_PW = pw })
    local res = require("weir.json").decode(out)
    assert.equal("closed", res.checks[2].breaker)
  end)
end)

H.describe_with("pg", "CSV into PostgreSQL", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("loads every row of files COPY would read otherwise (a line \\., no quote)", function()
    psql(URL, "DROP TABLE IF EXISTS csv_dot, csv_dot_rows, csv_noq, csv_noq_rows; "
              .. "CREATE TABLE csv_dot (v text); CREATE TABLE csv_dot_rows (v text); "
              .. "CREATE TABLE csv_noq (a text, b text); CREATE TABLE csv_noq_rows (a text, b text)")
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/dot.csv", "v\nfirst\n\\.\nafter\n")
    H.write(dir .. "/noq.csv", 'a,b\n"x,y\nz",w\n')
    H.write(dir .. "/p.lua", [[
local function keep(r) return r end
return pipeline { name = "csvshapes", tasks = {
  dot = task { run = function(ctx) return ctx.csv("dot.csv"):into(ctx.sink("wh"), "csv_dot") end },
  dot_rows = task { run = function(ctx)
    return ctx.csv("dot.csv"):map(keep):into(ctx.sink("wh"), "csv_dot_rows") end },
  noq = task { run = function(ctx)
    return ctx.csv("noq.csv", { quote = "" }):into(ctx.sink("wh"), "csv_noq") end },
  noq_rows = task { run = function(ctx)
    return ctx.csv("noq.csv", { quote = "" }):map(keep):into(ctx.sink("wh"), "csv_noq_rows") end },
} }]])
    local code, _, err = weir(dir, "run p.lua")
    assert.equal(0, code, err)
    -- what the row path loads, compared on the server, both ways
    assert.equal("3", psql(URL, "SELECT count(*) FROM csv_dot"))
    assert.equal("0", psql(URL, "SELECT count(*) FROM ((TABLE csv_dot EXCEPT ALL TABLE csv_dot_rows) "
                             .. "UNION ALL (TABLE csv_dot_rows EXCEPT ALL TABLE csv_dot)) d"))
    assert.equal("1", psql(URL, "SELECT count(*) FROM csv_dot WHERE v = '\\.'"))
    assert.equal("2", psql(URL, "SELECT count(*) FROM csv_noq"))
    assert.equal("0", psql(URL, "SELECT count(*) FROM ((TABLE csv_noq EXCEPT ALL TABLE csv_noq_rows) "
                             .. "UNION ALL (TABLE csv_noq_rows EXCEPT ALL TABLE csv_noq)) d"))
  end)

  it("sends an untouched CSV file to COPY as it is, and the same rows through a map", function()
    psql(URL, "DROP TABLE IF EXISTS csv_raw, csv_rows; "
              .. "CREATE TABLE csv_raw (id int8 PRIMARY KEY, name text, note text, n int4); "
              .. "CREATE TABLE csv_rows (LIKE csv_raw)")
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/data.csv", 'id,name,note,n\n1,"a, b","line1\nline2",7\n2,,x,\n3,"","say ""hi""",9\n')
    H.write(dir .. "/p.lua", [[
return pipeline { name = "csvpg", tasks = {
  raw = task { run = function(ctx)
    return ctx.csv("data.csv"):into(ctx.sink("wh"), "csv_raw", { mode = "upsert" })
  end },
  rows = task { run = function(ctx)
    return ctx.csv("data.csv")
      :map(function(r) if r.n == "" then r.n = nil end; return r end)
      :into(ctx.sink("wh"), "csv_rows")
  end },
} }]])
    local code, _, err = weir(dir, "run p.lua")
    assert.equal(0, code, err)
    local want = '1|a, b|line1\nline2|7\n2||x|\n3||say "hi"|9'
    assert.equal(want, psql(URL, "SELECT id, name, note, n FROM csv_raw ORDER BY id"))
    assert.equal(want, psql(URL, "SELECT id, name, note, n FROM csv_rows ORDER BY id"))
    -- empty text fields stay empty strings on both paths, never NULL
    assert.equal("0", psql(URL, "SELECT count(*) FROM csv_raw WHERE name IS NULL OR note IS NULL"))
    local run = H.show(dir, H.last_run(dir))
    assert.equal(3, H.task(run, "raw").rows_out)
    assert.equal(3, H.task(run, "raw").rows_in)
  end)
end)

H.describe_with("pg", "SQL NULL between SQLite and PostgreSQL", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  -- The rows of a SQLite table as INSERT statements psql runs: the sqlite3
  -- CLI writes NULL as NULL and '' as '', so no weir code reads them.
  local function sqlite_inserts(db, into)
    return H.output("sqlite3 " .. H.q(db) .. " " .. H.q(".mode insert " .. into) .. " "
                .. H.q("SELECT id, name, score FROM t"))
  end
  -- differences both ways (EXCEPT ALL: NULL matches NULL), then the NULL
  -- and empty-string counts of tbl
  local function compare(a, b)
    return psql(URL, ("SELECT (SELECT count(*) FROM (TABLE %s EXCEPT ALL TABLE %s) x), "
                      .. "(SELECT count(*) FROM (TABLE %s EXCEPT ALL TABLE %s) y), "
                      .. "count(*) FILTER (WHERE name IS NULL), count(*) FILTER (WHERE score IS NULL), "
                      .. "count(*) FILTER (WHERE name = '') FROM %s"):format(a, b, b, a, b))
  end
  local ROWS = "(1, 'a', NULL), (2, NULL, 2.5), (3, NULL, NULL), (4, '', 4.5)"
  local COLS = "(id int8 PRIMARY KEY, name text, score float8)"

  it("copies a table with NULLs both ways and keeps every NULL", function()
    psql(URL, "DROP TABLE IF EXISTS nul_src, nul_from_sqlite, nul_ref, nul_back; "
              .. "CREATE TABLE nul_src " .. COLS .. "; INSERT INTO nul_src VALUES " .. ROWS .. "; "
              .. "CREATE TABLE nul_from_sqlite " .. COLS .. "; CREATE TABLE nul_ref " .. COLS .. "; "
              .. "CREATE TABLE nul_back " .. COLS)
    H.output("sqlite3 " .. H.q(dir .. "/src.db") .. " "
         .. H.q("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL); "
                .. "INSERT INTO t VALUES " .. ROWS))
    H.write(dir .. "/weir.yaml", yaml(PORT))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "nulls", tasks = {
  to_pg = task { run = function(ctx)
    return ctx.sqlite("src.db"):query("SELECT id, name, score FROM t")
      :into(ctx.sink("wh"), "nul_from_sqlite")
  end },
  to_sqlite = task { run = function(ctx)
    local wh = ctx.source("wh")
    local sql = "SELECT id, name, score FROM nul_src WHERE id > $1 ORDER BY id"
    -- SQL NULL is ctx.NULL on every read path: COPY, cursor, db:rows
    local seen = {}
    for _, rows in ipairs({ wh:query("SELECT id, name, score FROM nul_src ORDER BY id"):collect(),
                            wh:query(sql, { 0 }):collect(), wh:rows(sql, { 0 }) }) do
      local n = 0
      for _, r in ipairs(rows) do
        for _, c in ipairs({ "id", "name", "score" }) do
          if r[c] == ctx.NULL then n = n + 1 end
        end
      end
      seen[#seen + 1] = n
    end
    wh:query("SELECT id, name, score FROM nul_src"):into(ctx.sqlite("dst.db"), "t")
    return seen
  end },
} }]])
    local code, _, err = weir(dir, "run p.lua")
    assert.equal(0, code, err)
    assert.same({ 4, 4, 4 }, H.task(H.show(dir, H.last_run(dir)), "to_sqlite").output)
    -- SQLite -> PostgreSQL: the source, as the sqlite3 CLI prints it,
    -- against what weir loaded
    psql(URL, sqlite_inserts(dir .. "/src.db", "nul_ref"))
    assert.equal("0|0|2|2|1", compare("nul_ref", "nul_from_sqlite"))
    -- PostgreSQL -> SQLite: what weir loaded, as the sqlite3 CLI prints
    -- it, against the source
    psql(URL, sqlite_inserts(dir .. "/dst.db", "nul_back"))
    assert.equal("0|0|2|2|1", compare("nul_src", "nul_back"))
  end)
end)

H.describe_with("pg", "a PostgreSQL metadata store beside task connections", function()
  local dir, db, role, rpw
  local function env() return { WEIR_PW = PW, WEIR_TPW = rpw } end
  -- weir.yaml: the store in database db as the server's role; the
  -- connection wh as user (password from ref) on database (db) at host
  local function config(user, ref, database, host)
    return ([[
metadata_url: "postgres://weir:${env:WEIR_PW}@127.0.0.1:%s/%s"
connections:
  wh:
    type: postgres
    url: "postgres://%s:%s@%s:%s/%s"
    sslmode: disable
]]):format(PORT, db, user, ref, host or "127.0.0.1", PORT, database or db)
  end
  local function show(id)
    local code, out, err = H.weir(dir, "show " .. id .. " --json", env())
    assert.equal(0, code, err)
    return require("weir.json").decode(out)
  end
  local function runs()
    local code, out, err = H.weir(dir, "runs --json", env())
    assert.equal(0, code, err)
    return require("weir.json").decode(out)
  end

  before_each(function()
    dir = H.tmpdir()
    local n = math.random(1, 1e9)
    db, role, rpw = "weir_iso_" .. n, "weir_task_" .. n, "task-pw-" .. n
    psql(URL, "CREATE DATABASE " .. db)
    psql(URL, "CREATE ROLE " .. role .. " LOGIN PASSWORD '" .. rpw .. "'")
  end)
  after_each(function()
    psql(URL, "DROP DATABASE IF EXISTS " .. db .. " WITH (FORCE)")
    psql(URL, "DROP ROLE IF EXISTS " .. role)
    H.cleanup(dir)
  end)

  it("keeps a task on the store's database, as another role, out of weir's tables", function()
    H.write(dir .. "/weir.yaml", config(role, "${env:WEIR_TPW}"))
    local src = [[
return pipeline { name = "nosy", tasks = {
  probe = task { run = function(ctx)
    local wh, out = ctx.source("wh"), {}
    for _, sql in ipairs({ "SELECT * FROM weir.runs", "SELECT source FROM weir.pipeline_versions",
                           "UPDATE weir.runs SET status = 'success'",
                           "UPDATE weir.pipeline_versions SET source = 'return 1'",
                           "SELECT 'connected' AS v" }) do
      local ok, err = pcall(wh.exec, wh, sql)
      out[#out + 1] = ok and "allowed" or tostring(err)
    end
    return out
  end },
  broken = task { retries = 0, run = function() error("boom") end },
} }]]
    H.write(dir .. "/p.lua", src)
    local code, _, err = H.weir(dir, "run p.lua", env())
    assert.equal(1, code, err)
    local list = runs()
    assert.equal(1, #list)
    local run = show(list[1].run_id)
    assert.equal("failed", run.status)
    local probe = H.task(run, "probe")
    assert.equal("success", probe.state, probe.error)
    for i = 1, 4 do
      assert.matches("postgres wh: [42501] permission denied for schema weir", probe.output[i], 1,
                     true)
    end
    assert.equal("allowed", probe.output[5])
    -- the records are as the run left them
    local on_db = URL:gsub("/postgres$", "/" .. db)
    assert.equal("failed", psql(on_db, "SELECT status FROM weir.runs"))
    assert.equal(src, psql(on_db, "SELECT convert_from(source, 'UTF8') FROM weir.pipeline_versions"))
  end)

  it("refuses to run when a connection reaches the store's server as the store's role", function()
    -- another database, another host name: the same role on the same server
    local marker = "weir_refused_" .. math.random(1, 1e9)
    H.write(dir .. "/weir.yaml", config("weir", "${env:WEIR_PW}", "postgres", "localhost"))
    H.write(dir .. "/p.lua", ([[
return pipeline { name = "shared", tasks = { a = task { run = function(ctx)
  ctx.source("wh"):exec("CREATE TABLE %s (a int)")
end } } }]]):format(marker))
    local code, _, err = H.weir(dir, "run p.lua", env())
    assert.equal(1, code, err)
    assert.matches("weir run: connection wh reaches the metadata store's server as the metadata "
                   .. "store's own role weir: tasks could read and change weir's runs", err, 1,
                   true)
    assert.matches("a role of its own there", err, 1, true)
    assert.same({}, runs())
    assert.equal("", psql(URL, "SELECT to_regclass('" .. marker .. "')"))
  end)
end)
