-- End-to-end: data-quality checks declared on tasks (docs/quality.md) on
-- SQLite tables and CSV/JSON Lines files, their results in `weir show`,
-- what a failing check does to the run and to retries, ctx.check, and
-- s:validate with its dead-letter file.
local H = require("helpers")

local function sqlite(db, sql)
  return (H.output("sqlite3 " .. H.q(db) .. " " .. H.q(sql)):gsub("%s+$", ""))
end

-- the checks of a task's attempt n (default: its last), by name
local function checks_of(run, task, n)
  local t = H.task(run, task)
  local a = t.attempt_list[n or #t.attempt_list]
  local by = {}
  for _, c in ipairs(a.checks or {}) do by[c.name] = c end
  return by, a.checks or {}
end

local ROWS = [[
        { id = 1, email = "a@x.org", country = "DE", amount = 10, updated_at = NOW, password = "hunter2" },
        { id = 2, email = ctx.NULL, country = "FR", amount = -5, updated_at = "2020-01-01", password = "s3cret" },
        { id = 2, email = "bad-email", country = "XX", amount = 20, updated_at = "2020-01-01", password = "x" },
]]

describe("data-quality checks", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  local function run(src, args) return H.run_pipeline(dir, src, args) end

  it("run on the SQLite table a task wrote, store every result and fail the task after its load", function()
    local code, r = run([[
      local NOW = os.date("!%Y-%m-%dT%H:%M:%SZ")
      return pipeline { name = "q", tasks = {
        load = task {
          retries = 3, retry_delay = "10ms",
          run = function(ctx)
            return ctx.rows({ ]] .. ROWS .. [[ }, { columns = { "id", "email", "country", "amount",
                                                   "updated_at", "password" } })
              :into(ctx.sqlite("out/q.db"), "orders", { mode = "append" })
          end,
          checks = {
            { "row_count", min = 1 },
            { "not_null", column = "email" },
            { "unique", column = "id", severity = "warn" },
            { "accepted_values", column = "country", values = { "DE", "FR" } },
            { "range", column = "amount", min = 0, max = 1e6 },
            { "pattern", column = "email", pattern = "^[^@]+@[^@]+$", name = "email_shape" },
            { "freshness", column = "updated_at", max_age = "1d" },
            { "sql", query = "SELECT count(*) FROM orders WHERE amount > 100", expect = 0 },
            { "custom", name = "odd_ids", severity = "warn", run = function(ctx, ds)
                local n = 0
                ds.rows():each(function(row) if row.id % 2 == 1 then n = n + 1 end end)
                return { ok = n == 0, observed = n, message = ds.name }
              end },
          },
        },
        after_load = task { after = { "load" }, run = function() return 1 end },
      } }
    ]])
    assert.equal(1, code)
    local t = H.task(r, "load")
    -- a verdict on committed data is final: no retry
    assert.equal(1, t.attempts)
    assert.equal("upstream_failed", H.task(r, "after_load").state)
    assert.matches("checks failed: not_null(email): 1 row(s) with a null; "
                   .. "accepted_values(country): 1 row(s) with a value not accepted", t.error, 1, true)
    -- the load committed: the rows are there, once
    assert.equal("3", sqlite(dir .. "/out/q.db", "SELECT count(*) FROM orders"))
    -- what the custom check read is not counted as the task's rows in
    assert.same({ 3, 3 }, { t.attempt_list[1].rows_in, t.attempt_list[1].rows_out })
    local by, list = checks_of(r, "load")
    assert.equal(9, #list)
    assert.same({ "pass", 3 }, { by.row_count.status, by.row_count.observed })
    assert.same({ "fail", 1 }, { by["not_null(email)"].status, by["not_null(email)"].observed })
    assert.same({ "warn", 1, "warn" }, { by["unique(id)"].status, by["unique(id)"].observed,
                                        by["unique(id)"].severity })
    assert.equal("fail", by["accepted_values(country)"].status)
    assert.equal("fail", by["range(amount)"].status)
    assert.same({ "fail", 1 }, { by.email_shape.status, by.email_shape.observed })
    assert.equal("pass", by["freshness(updated_at)"].status)
    assert.same({ "pass", 0 }, { by.sql.status, by.sql.observed })
    assert.same({ "warn", 1, "sqlite:out/q.db#orders" },
                { by.odd_ids.status, by.odd_ids.observed, by.odd_ids.message })
    assert.equal("sqlite:out/q.db#orders", by["range(amount)"].dataset)
    -- sample rows of a failing check, secret-looking columns masked
    local s = by["range(amount)"].samples
    assert.equal(1, #s)
    assert.same({ -5, "[masked]", "FR" }, { s[1].amount, s[1].password, s[1].country })
    assert.equal("XX", by["accepted_values(country)"].samples[1].country)
    assert.is_nil(by.row_count.samples)
    -- and the text of weir show lists them
    local _, text = H.weir(dir, "show " .. r.run_id)
    assert.matches("check not_null%(email%)%s+fail%s+observed 1", text)
    assert.matches("check row_count%s+pass%s+observed 3", text)
    assert.matches('"password":"%[masked%]"', text)
    assert.is_nil(text:find("s3cret", 1, true))
  end)

  it("let a task succeed when only warn checks fail", function()
    local code, r, err = run([[
      return pipeline { name = "w", tasks = { load = task {
        run = function(ctx)
          local db = ctx.sqlite("out/w.db")
          db:exec("CREATE TABLE parent (pid INTEGER)")
          db:exec("INSERT INTO parent VALUES (1)")
          return ctx.rows({ { id = 1, k = "a" }, { id = 1, k = "b" }, { id = 1, k = "a" }, { id = 2, k = ctx.NULL } })
            :into(db, "t")
        end,
        checks = { { "unique", column = "id", severity = "warn" }, { "row_count", min = 4, max = 4 },
                   { "unique", columns = { "id", "k" }, severity = "warn" },
                   { "relationship", column = "id", to = "parent.pid", severity = "warn" } },
      } } }
    ]])
    assert.equal(0, code, err)
    local by = checks_of(r, "load")
    assert.same({ "warn", 2 }, { by["unique(id)"].status, by["unique(id)"].observed })
    assert.equal("pass", by.row_count.status)
    -- (1, a) twice; (2, NULL) is left out
    assert.same({ "warn", 1 }, { by["unique(id,k)"].status, by["unique(id,k)"].observed })
    assert.same({ 1, "a", 2 }, { by["unique(id,k)"].samples[1].id, by["unique(id,k)"].samples[1].k,
                                 by["unique(id,k)"].samples[1].weir_rows })
    local rel = by["relationship(id->parent.pid)"]
    assert.same({ "warn", 1, 2 }, { rel.status, rel.observed, rel.samples[1].id })
    assert.equal("success", H.task(r, "load").state)
  end)

  it("retry a check that could not run without loading twice", function()
    local code, r, err = run([[
      return pipeline { name = "retry", tasks = { load = task {
        retries = 2, retry_delay = "10ms",
        run = function(ctx)
          return ctx.rows({ { id = 1 }, { id = 2 } }):into(ctx.sqlite("out/r.db"), "t")
        end,
        checks = {
          { "row_count", min = 2 },
          { "custom", name = "flaky", run = function(ctx)
              if ctx.attempt == 1 then error("the service that checks is down") end
              return true
            end },
        },
      } } }
    ]])
    assert.equal(0, code, err)
    local t = H.task(r, "load")
    assert.equal(2, t.attempts)
    local first = checks_of(r, "load", 1)
    assert.equal("error", first.flaky.status)
    assert.matches("the service that checks is down", first.flaky.message)
    assert.equal("pass", checks_of(r, "load", 2).flaky.status)
    -- attempt 2 found its load in the ledger: two rows, not four
    assert.equal("2", sqlite(dir .. "/out/r.db", "SELECT count(*) FROM t"))
    assert.equal(2, checks_of(r, "load", 2).row_count.observed)
  end)

  it("check CSV and JSON Lines files in one pass, written or named", function()
    H.write(dir .. "/in.jsonl", '{"id":1,"kind":"a"}\n{"id":2,"kind":"z"}\n{"id":2}\n')
    local code, r = run([[
      return pipeline { name = "files", tasks = {
        write = task {
          run = function(ctx)
            return ctx.rows({ { id = 1, v = "x1" }, { id = 2, v = "" }, { id = 3, v = "y3" } },
                            { columns = { "id", "v" } }):to_csv("out/w.csv")
          end,
          checks = {
            { "row_count", min = 3, max = 3 },
            { "not_null", column = "v" },
            { "pattern", column = "v", pattern = "^[a-z]\\d$" },
            { "range", column = "id", min = 1, max = 2 },
            { "unique", columns = { "id" } },
            { "relationship", column = "id", to = "other.id", severity = "warn" },
          },
        },
        named = task {
          run = function() return "nothing written" end,
          checks = {
            { "accepted_values", column = "kind", values = { "a", "b" }, dataset = { jsonl = "in.jsonl" } },
            { "unique", column = "id", dataset = { jsonl = "in.jsonl" } },
            { "not_null", column = "kind", dataset = { jsonl = "in.jsonl" }, severity = "warn" },
          },
        },
      } }
    ]])
    assert.equal(1, code)
    local w = checks_of(r, "write")
    assert.same({ "pass", 3 }, { w.row_count.status, w.row_count.observed })
    assert.same({ "fail", 1 }, { w["not_null(v)"].status, w["not_null(v)"].observed })
    assert.same({ "pass", 0 }, { w["pattern(v)"].status, w["pattern(v)"].observed })
    assert.same({ "fail", 1 }, { w["range(id)"].status, w["range(id)"].observed })
    assert.equal("3", w["range(id)"].samples[1].id)
    assert.equal("pass", w["unique(id)"].status)
    assert.equal("error", w["relationship(id->other.id)"].status)
    assert.equal("file:out/w.csv", w["range(id)"].dataset)
    local n = checks_of(r, "named")
    assert.same({ "fail", 1 }, { n["accepted_values(kind)"].status, n["accepted_values(kind)"].observed })
    assert.same({ "fail", 1 }, { n["unique(id)"].status, n["unique(id)"].observed })
    assert.same({ "warn", 1 }, { n["not_null(kind)"].status, n["not_null(kind)"].observed })
    assert.equal("file:in.jsonl", n["unique(id)"].dataset)
  end)

  it("say which dataset is meant when a task wrote several or none", function()
    local code, r = run([[
      return pipeline { name = "which", tasks = { load = task {
        run = function(ctx)
          local db = ctx.sqlite("out/x.db")
          ctx.rows({ { id = 1 } }):into(db, "a")
          ctx.rows({ { id = 1 } }):into(db, "b")
        end,
        checks = { { "row_count", min = 1 }, { "row_count", min = 1, name = "b_rows",
                                                dataset = { sqlite = "out/x.db", table = "b" } } },
      } } }
    ]])
    assert.equal(1, code)
    local by = checks_of(r, "load")
    assert.equal("error", by.row_count.status)
    assert.matches("the task wrote 2 datasets (sqlite:out/x.db#a, sqlite:out/x.db#b)",
                   by.row_count.message, 1, true)
    assert.equal("pass", by.b_rows.status)
  end)

  it("are checked with the pipeline, each error naming its path", function()
    H.write(dir .. "/p.lua", [[
      return pipeline { name = "bad", tasks = { load = task {
        run = function() end,
        checks = {
          { "row_count" },
          { "range", column = "amount", min = 0, pattern = "x" },
          { "teleport", column = "x" },
          { "pattern", column = "e", pattern = "(" },
          { "freshness", column = "t", max_age = "soon" },
          { "not_null", column = "a", severity = "fatal" },
          { "unique", column = "a", dataset = { csv = "a.csv", sqlite = "b.db" } },
          { "custom", run = "not a function" },
          { "row_count", min = 1, name = "dup" }, { "row_count", min = 2, name = "dup" },
        },
      } } }
    ]])
    local code, out, err = H.weir(dir, "validate p.lua")
    assert.equal(1, code)
    local all = out .. err
    assert.matches("tasks.load.checks[1]: row_count needs min or max", all, 1, true)
    assert.matches("tasks.load.checks[2].pattern: not an option of range", all, 1, true)
    assert.matches("tasks.load.checks[3].check:", all, 1, true)
    assert.matches("tasks.load.checks[4].pattern: regex:", all, 1, true)
    assert.matches("tasks.load.checks[5].max_age:", all, 1, true)
    assert.matches("tasks.load.checks[6].severity:", all, 1, true)
    assert.matches("tasks.load.checks[7].dataset: name one of sqlite, connection, csv or jsonl", all, 1, true)
    assert.matches("tasks.load.checks[8].run: expected function", all, 1, true)
    assert.matches('tasks.load.checks[10].name: check name "dup" is used twice', all, 1, true)
  end)

  it("run from YAML pipelines, custom checks as Lua text", function()
    H.write(dir .. "/p.yaml", [[
name: yq
tasks:
  load:
    run: |
      local ctx = ...
      return ctx.rows({ { id = 1 }, { id = 2 } }):into(ctx.sqlite("out/y.db"), "t")
    checks:
      - { check: row_count, min: 2 }
      - check: custom
        name: two
        run: |
          local _, ds = ...
          return #ds.rows():collect() == 2
]])
    local code, _, err = H.weir(dir, "run p.yaml")
    assert.equal(0, code, err)
    local by = checks_of(H.show(dir, H.last_run(dir)), "load")
    assert.equal("pass", by.two.status)
    assert.equal("pass", by.row_count.status)
  end)

  it("keep ctx.check's rules working, with results stored", function()
    local code, r = run([[
      return pipeline { name = "old", tasks = {
        ok = task { run = function(ctx)
          local db = ctx.sqlite("out/o.db")
          db:exec("CREATE TABLE t (id INTEGER, email TEXT)")
          db:exec("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
          return ctx.check(db, "t", { row_count = { min = 1 }, not_null = { "email" }, unique = { "id" } })
        end },
        bad = task { after = { "ok" }, run = function(ctx)
          local db = ctx.sqlite("out/o.db")
          db:exec("INSERT INTO t VALUES (1, NULL)")
          return ctx.check(db, "t", { { "not_null", column = "email" }, { "row_count", max = 2 } })
        end },
      } }
    ]])
    assert.equal(1, code)
    assert.same({ checks = "passed", row_count = 2 }, H.task(r, "ok").output)
    assert.equal("p.lua:8: check t failed: not_null(email): 1 row(s) with a null; row_count: 3 rows, "
                 .. "more than 2", H.task(r, "bad").error)
    assert.equal(3, #H.task(r, "ok").attempt_list[1].checks)
    assert.equal("fail", checks_of(r, "bad")["not_null(email)"].status)
  end)
end)

describe("s:validate", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("dead-letters each bad row with its reason, counts exact, the file replaced per attempt", function()
    local code, r, err = H.run_pipeline(dir, [[
      return pipeline { name = "v", tasks = { load = task {
        retries = 1, retry_delay = "10ms",
        run = function(ctx)
          local rows = {}
          for i = 1, 2500 do rows[i] = { id = i, email = (i % 10 == 0) and "nope" or ("u" .. i .. "@x.org") } end
          local res = ctx.rows(rows)
            :validate({ type = "object", required = { "id", "email" },
                        properties = { email = { type = "string", pattern = "@" } } },
                      { dead_letter = "out/bad.jsonl" })
            :validate(function(row) return row.id ~= 7, "seven is not welcome" end,
                      { dead_letter = "out/bad7.jsonl" })
            :into(ctx.sqlite("out/v.db"), "users", { mode = "replace" })
          if ctx.attempt == 1 then error("after the load, to see the retry") end
          return res
        end } } }
    ]])
    assert.equal(0, code, err)
    local t = H.task(r, "load")
    assert.equal(2, t.attempts)
    -- rows in = rows out + rows dead-lettered
    assert.equal(2500, t.rows_in)
    assert.equal(2249, t.rows_out)
    local bad = H.read(dir .. "/out/bad.jsonl")
    local lines = {}
    for l in bad:gmatch("[^\n]+") do lines[#lines + 1] = require("weir.json").decode(l) end
    -- attempt 2 replaced attempt 1's file: 250 lines, not 500
    assert.equal(250, #lines)
    assert.equal(10, lines[1].row.id)
    assert.equal(10, lines[1].n)
    assert.matches("email", lines[1].reason)
    assert.equal("load", lines[1].task)
    local seven = H.read(dir .. "/out/bad7.jsonl")
    assert.matches('"reason":"seven is not welcome"', seven, 1, true)
    assert.equal("2249", sqlite(dir .. "/out/v.db", "SELECT count(*) FROM users"))
    assert.matches("validate: 2500 rows in, 2250 passed, 250 rejected %(to out/bad.jsonl%)",
                   t.attempt_list[2].log)
  end)

  it("fails the task on a bad row when there is no dead-letter file", function()
    local code, r = H.run_pipeline(dir, [[
      return pipeline { name = "v2", tasks = { load = task { run = function(ctx)
        return ctx.rows({ { n = 1 }, { n = -1 } })
          :validate(function(row) return row.n > 0, "n must be positive" end):count()
      end } } }
    ]])
    assert.equal(1, code)
    assert.matches("validate: row 2: n must be positive", H.task(r, "load").error, 1, true)
  end)
end)
