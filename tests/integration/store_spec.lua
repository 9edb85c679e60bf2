-- The metadata store: one set of behaviour specs run against each backend
-- (SQLite in a temporary file; PostgreSQL in a fresh database on the
-- server of WEIR_TEST_PG_URL, dropped afterwards), then the CLI over each
-- (`weir run`, `weir show --json`, `weir runs --json`, `weir resume`).
local H = require("helpers")
local json = require("weir.json")
local PG_URL = (H.service("pg") or {}).url

-- url with its path replaced by /db (query kept).
local function with_db(url, db)
  return (url:gsub("^([%a][%w+.-]*://[^/?]*)/?[^?]*", "%1/" .. db, 1))
end

local function admin()
  local cfg = assert(require("weir.store.postgres").config(PG_URL))
  cfg.name = "store_admin"
  return require("weir.connectors.postgres").connect(cfg)
end

-- Each backend: a fresh target (returns its WEIR_METADATA_URL), a raw
-- query on it, and its removal.
local BACKENDS = {
  {
    name = "sqlite",
    fresh = function(dir) return "sqlite:" .. dir .. "/meta.db" end,
    raw = function(url, sql)
      local db = assert(require("weir.connectors.sqlite").open(url:match("^sqlite:(.*)$"), { create = false }))
      local rows = assert(db:all(sql))
      db:close()
      return rows
    end,
    drop = function() end,
  },
  {
    name = "postgres",
    needs = "pg",
    fresh = function()
      local name = string.format("weir_store_%d_%d", os.time(), math.random(1, 1e9))
      admin():run("CREATE DATABASE " .. name)
      return with_db(PG_URL, name)
    end,
    raw = function(url, sql)
      local cfg = assert(require("weir.store.postgres").config(url))
      cfg.name = "store_raw"
      -- weir's tables are in its own schema
      cfg.session = "-c search_path=weir"
      return (require("weir.connectors.postgres").connect(cfg):all(sql))
    end,
    drop = function(url)
      local db = url:match("^[^/]*//[^/]*/([^?]*)")
      require("weir.connectors.postgres").close_all()
      admin():run("DROP DATABASE IF EXISTS " .. db .. " WITH (FORCE)")
    end,
  },
}

-- The shape of `weir show --json` for comparing backends: values whose
-- content depends on time, pids or ids become their type.
local VARIABLE = { id = true, run_id = true, created_at = true, started_at = true,
                   finished_at = true, supervisor_pid = true, supervisor_id = true,
                   worker_pid = true, mem_peak = true, pipeline_id = true, version_id = true,
                   duration_s = true, since = true }
local function shape(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = VARIABLE[k] and type(x) or shape(x) end
  return out
end
local shown, checked = {}, {}

for _, B in ipairs(BACKENDS) do
  H.describe_with(B.needs, "the metadata store on " .. B.name, function()
    local dir, url, opened
    local NULL = require("weir.connectors.sqlite").NULL

    local function open()
      local s, err = require("weir.store").open(dir .. "/.weir", url)
      assert(s, tostring(err))
      opened[#opened + 1] = s
      return s
    end

    -- a pipeline version and a run of it (status queued unless given)
    local function seed(s, id, opts)
      opts = opts or {}
      local vid, pid = s:pipeline_version(opts.pipeline or "p", "lua", "/pipes/p.lua",
                                          "return 1", opts.hash or "h1", 1000)
      s:begin()
      s:create_run({ id = id, pipeline_id = pid, version_id = vid, status = opts.status or "queued",
                     params = '{"n":2}', options = '{"workers":2}',
                     created_at = opts.created_at or 1700000000000.5, supervisor_pid = 999 })
      s:commit()
      return vid, pid
    end

    before_each(function()
      dir = H.tmpdir()
      url = B.fresh(dir)
      opened = {}
    end)

    after_each(function()
      for _, s in ipairs(opened) do pcall(s.close, s) end
      B.drop(url)
      H.cleanup(dir)
    end)

    it("applies its migrations once; migrating again changes nothing", function()
      local s = open()
      local migs = require("weir.store." .. B.name).MIGRATIONS
      -- numbers, not a sequence: a merge may leave one without a migration
      local n, count = require("weir.store." .. B.name).LATEST, require("weir.util").count(migs)
      assert.equal(n, s:schema_version())
      s:migrate()
      s:close()
      s = open()
      s:migrate()
      assert.equal(n, s:schema_version())
      local rows = B.raw(url, "SELECT count(*) AS n, max(version) AS v FROM schema_migrations")
      assert.equal(count, rows[1].n)
      assert.equal(n, rows[1].v)
    end)

    it("has the migrations of the other backend, by number", function()
      local function numbers(m)
        local out = {}
        for v in pairs(m) do out[#out + 1] = v end
        table.sort(out)
        return out
      end
      assert.same(numbers(require("weir.store.sqlite").MIGRATIONS),
                  numbers(require("weir.store.postgres").MIGRATIONS))
    end)

    it("records lineage per attempt and lists successful writes after an id, in order", function()
      local s = open()
      seed(s, "r1", { pipeline = "loads" })
      local cols = { { name = "id", type = "integer" }, { name = "email", type = "text" } }
      s:begin()
      s:add_lineage("r1", "extract", 1, "loads", "failed", 1700000001000, {
        { dataset = "file:in.csv", role = "input", rows = 3 },
        { dataset = "sqlite:out.db#t", role = "output", rows = 0 },
      })
      s:add_lineage("r1", "extract", 2, "loads", "success", 1700000002500, {
        { dataset = "file:in.csv", role = "input", rows = 3 },
        { dataset = "sqlite:out.db#t", role = "output", rows = 3, columns = cols },
      })
      s:add_lineage("r1", "publish", 1, "loads", "success", 1700000003000, {
        { dataset = "sqlite:out.db#t", role = "input", rows = 3 },
        { dataset = "postgres://db:5432/w/public.t", role = "output", rows = 3 },
      })
      s:commit()
      local all = s:dataset_writes_after(0, 10)
      assert.equal(2, #all)
      assert.same({ "sqlite:out.db#t", "r1", "loads", "extract", 1700000002.5 },
                  { all[1].dataset, all[1].run_id, all[1].pipeline, all[1].task, all[1].at })
      assert.same({ "postgres://db:5432/w/public.t", "publish", 1700000003 },
                  { all[2].dataset, all[2].task, all[2].at })
      assert.equal("number", type(all[1].id))
      assert.truthy(all[2].id > all[1].id)
      -- after an id, with a limit
      assert.same({ all[2] }, s:dataset_writes_after(all[1].id, 10))
      assert.same({ all[1] }, s:dataset_writes_after(0, 1))
      assert.same({}, s:dataset_writes_after(all[2].id, 10))
      assert.same(all, s:dataset_writes_after(nil))
      -- a later commit gets a larger id
      s:begin()
      s:add_lineage("r1", "extract", 3, "loads", "success", 1700000004000,
                    { { dataset = "file:x.csv", role = "output", rows = 1 } })
      s:commit()
      local later = s:dataset_writes_after(all[2].id, 10)
      assert.equal(1, #later)
      assert.truthy(later[1].id > all[2].id)
      -- the run's rows, every attempt, columns decoded
      local rows = s:lineage_run("r1")
      assert.equal(7, #rows)
      assert.same({ "extract", 2, "success", "output", 3 },
                  { rows[4].task, rows[4].attempt, rows[4].status, rows[4].role, rows[4].rows })
      assert.same(cols, rows[4].columns)
      assert.is_nil(rows[1].columns)
      assert.same({}, s:lineage_run("nope"))
      -- edges: who read and wrote what, over successful attempts
      local edges = s:lineage_edges()
      local seen = {}
      for _, e in ipairs(edges) do
        seen[#seen + 1] = e.task .. " " .. e.role .. " " .. e.dataset .. " " .. e.runs
      end
      assert.same({ "extract input file:in.csv 1", "extract output file:x.csv 1",
                    "extract output sqlite:out.db#t 1",
                    "publish output postgres://db:5432/w/public.t 1",
                    "publish input sqlite:out.db#t 1" }, seen)
    end)

    it("adds up what the OpenLineage export sent and dropped, per target", function()
      local s = open()
      assert.same({}, s:export_stats())
      s:export_count("file /x.jsonl", 4, 0, nil, 1000)
      s:export_count("file /x.jsonl", 2, 3, "queue full", 2000)
      s:export_count("file /x.jsonl", 1, 0, nil, 3000)
      local st = s:export_stats()
      assert.equal(1, #st)
      assert.same({ "file /x.jsonl", 7, 3, "queue full", 3000 },
                  { st[1].target, st[1].sent, st[1].dropped, st[1].last_error, st[1].updated_at })
    end)

    it("migrates once when several supervisors open a new store at once", function()
      H.write(dir .. "/open.lua", [[
        local s = assert(require("weir.store").open(arg[1]))
        s:close()
      ]])
      local codes = {}
      for i = 1, 6 do
        codes[i] = dir .. "/code" .. i
        H.spawn(dir, "script open.lua " .. H.q(dir .. "/.weir"), dir .. "/open" .. i .. ".log",
                { WEIR_METADATA_URL = url }, codes[i])
      end
      for i = 1, 6 do
        -- the shell creates the file before it writes the code: wait for the line
        assert.truthy(H.wait_for(function() return (H.read(codes[i]) or ""):find("\n") end, 20))
        assert.equal("0\n", H.read(codes[i]), H.read(dir .. "/open" .. i .. ".log"))
      end
      local rows = B.raw(url, "SELECT count(*) AS n FROM schema_migrations")
      assert.equal(require("weir.util").count(require("weir.store." .. B.name).MIGRATIONS),
                   rows[1].n)
    end)

    it("keeps the check results of each attempt, replaced when the attempt is", function()
      local s = open()
      seed(s, "r1")
      s:add_tasks("r1", { "load" })
      s:start_attempt("r1", "load", 1, 1000, 1000, 1)
      local function result(name, status, observed, samples)
        return { name = name, check = "not_null", severity = "fail", status = status,
                 dataset = "sqlite:x.db#t", observed = observed, message = "m",
                 samples = samples }
      end
      s:add_checks("r1", "load", 1, { result("a", "pass", "0"), result("b", "fail", "2",
                                                                  '[{"id":1}]') })
      s:add_checks("r1", "load", 2, { result("c", "error") })
      -- a requeued attempt 2 starts again: its results are replaced
      s:add_checks("r1", "load", 2, { result("d", "warn", '"3s"') })
      local rows = s:checks("r1")
      assert.equal(3, #rows)
      local got = {}
      for i, r in ipairs(rows) do
        got[i] = { r.task, r.attempt, r.seq, r.name, r.kind, r.status, r.observed, r.samples }
      end
      assert.same({ { "load", 1, 1, "a", "not_null", "pass", "0", nil },
                    { "load", 1, 2, "b", "not_null", "fail", "2", '[{"id":1}]' },
                    { "load", 2, 1, "d", "not_null", "warn", '"3s"', nil } }, got)
      checked[B.name] = shape(rows)
    end)

    it("keeps pipeline versions immutable, keyed by source hash", function()
      local s = open()
      local v1, p1 = s:pipeline_version("etl", "lua", "/a/etl.lua", "return 1", "h1", 1000.5)
      local v1b, p1b = s:pipeline_version("etl", "yaml", "/b/etl.lua", "return 2", "h1", 2000)
      assert.equal(v1, v1b)
      assert.equal(p1, p1b)
      local v2, p2 = s:pipeline_version("etl", "lua", "/a/etl.lua", "return 2", "h2", 3000)
      assert.are_not.equal(v1, v2)
      assert.equal(p1, p2)
      local _, p3 = s:pipeline_version("other", "lua", "/a/o.lua", "return 1", "h1", 3000)
      assert.are_not.equal(p1, p3)
      assert.same({ id = v1, pipeline_id = p1, pipeline = "etl", hash = "h1", kind = "lua",
                    path = "/a/etl.lua", source = "return 1", created_at = 1000.5 },
                  s:version(v1))
      assert.equal("return 2", s:version(v2).source)
      assert.is_nil(s:version(v2 + 1000))
      -- any bytes of a source come back as they were
      local bytes = "return 1 -- \0\255\254 latin-1: \233"
      local v4 = s:pipeline_version("etl", "lua", "/a/etl.lua", bytes, "h4", 4000)
      assert.equal(bytes, s:version(v4).source)
    end)

    it("records a run's lifecycle", function()
      local s = open()
      local vid, pid = seed(s, "run-1")
      assert.same({ id = "run-1", pipeline_id = pid, version_id = vid, pipeline = "p",
                    status = "queued", params = '{"n":2}', options = '{"workers":2}',
                    created_at = 1700000000000.5, supervisor_pid = 999 }, s:run("run-1"))
      s:begin()
      s:update_run("run-1", { status = "running", started_at = 1700000000100.25,
                              supervisor_pid = 1234 })
      s:commit()
      local r = s:run("run-1")
      assert.equal("running", r.status)
      assert.equal(1700000000100.25, r.started_at)
      assert.equal(1234, r.supervisor_pid)
      s:begin()
      s:update_run("run-1", { status = "failed", finished_at = 1700000000200.125,
                              error = "boom: \"quoted\"\nsecond line" })
      s:commit()
      r = s:run("run-1")
      assert.equal("failed", r.status)
      assert.equal(1700000000200.125, r.finished_at)
      assert.equal("boom: \"quoted\"\nsecond line", r.error)
      s:update_run("run-1", { error = NULL })
      assert.is_nil(s:run("run-1").error)
      assert.is_nil(s:run("no-such-run"))
      assert.has_error(function() s:update_run("run-1", { colour = "red" }) end,
                       "weir.store: unknown column colour")
    end)

    it("rolls back, nests begin/commit, and hides uncommitted writes from others", function()
      local s, other = open(), open()
      seed(s, "keep")
      local vid, pid = s:pipeline_version("p", "lua", "/pipes/p.lua", "return 1", "h1", 1000)
      s:begin()
      s:create_run({ id = "gone", pipeline_id = pid, version_id = vid, status = "queued",
                     params = "{}", options = "{}", created_at = 1 })
      s:rollback()
      assert.is_nil(s:run("gone"))
      s:begin()
      s:begin()
      s:update_run("keep", { status = "running" })
      s:commit()
      assert.equal("queued", other:run("keep").status)
      s:commit()
      assert.equal("running", other:run("keep").status)
      -- a failed statement does not leave the store unusable
      s:begin()
      assert.has_error(function()
        s:create_run({ id = "keep", pipeline_id = pid, version_id = vid, status = "queued",
                       params = "{}", options = "{}", created_at = 1 })
      end)
      s:rollback()
      assert.equal("running", s:run("keep").status)
    end)

    it("round-trips tasks and attempts, every field the engine writes", function()
      local s = open()
      seed(s, "r")
      s:begin()
      s:add_tasks("r", { "b", "a", "Z", "_x" })
      s:add_tasks("r", { "a" })   -- again: ignored
      s:set_task("r", "b", { state = "skipped" })
      s:commit()
      local names = {}
      for i, t in ipairs(s:tasks("r")) do names[i] = t.task end
      assert.same({ "Z", "_x", "a", "b" }, names)   -- byte order, as SQLite sorts
      assert.same({ run_id = "r", task = "Z", state = "queued", attempts = 0, rows_in = 0,
                    rows_out = 0 }, s:tasks("r")[1])

      -- attempt 1 fails with every field set
      s:begin()
      s:start_attempt("r", "a", 1, 1000.25, 1000.25, 4321)
      s:commit()
      assert.same({ run_id = "r", task = "a", attempt = 1, status = "running", worker_pid = 4321,
                    started_at = 1000.25 }, s:attempts("r")[1])
      local t = s:tasks("r")[3]
      assert.same({ "a", "running", 1, 1000.25 }, { t.task, t.state, t.attempts, t.started_at })
      local log = "line 1\nünïcödé ✓ \"q\" 'q' \\ \t end"
      s:begin()
      s:finish_attempt("r", "a", 1, { status = "failed", finished_at = 2000.5,
                                      error = "boom\nat line 3", output = '{"partial":true}',
                                      log = log, mem_peak = 2 ^ 40 + 1, rows_in = 0,
                                      rows_out = 7 })
      s:set_task("r", "a", { state = "up_for_retry", error = "boom\nat line 3",
                             next_try_at = 2500.75 })
      s:commit()
      assert.same({ run_id = "r", task = "a", attempt = 1, status = "failed", worker_pid = 4321,
                    started_at = 1000.25, finished_at = 2000.5, error = "boom\nat line 3",
                    output = '{"partial":true}', log = log, mem_peak = 2 ^ 40 + 1, rows_in = 0,
                    rows_out = 7 }, s:attempts("r")[1])
      t = s:tasks("r")[3]
      assert.same({ "up_for_retry", "boom\nat line 3", 2500.75 }, { t.state, t.error, t.next_try_at })

      -- attempt 2 is sent, re-queued (its worker died), sent again: the
      -- row is replaced, nothing of the first try remains
      s:begin()
      s:set_task("r", "a", { state = "queued", error = NULL })
      s:start_attempt("r", "a", 2, 3000, 1000.25, 5555)
      s:update_attempt("r", "a", 2, { status = "failed", finished_at = 3100, error = "died",
                                      log = "x" })
      s:update_attempt("r", "a", 2, { status = "requeued" })
      s:start_attempt("r", "a", 2, 3200.5, 1000.25, 6666)
      s:commit()
      assert.same({ run_id = "r", task = "a", attempt = 2, status = "running", worker_pid = 6666,
                    started_at = 3200.5 }, s:attempts("r")[2])

      -- it succeeds; the output is JSON text and stays text
      local big = '{"v":"' .. string.rep("x", 200000) .. '"}'
      s:begin()
      s:finish_attempt("r", "a", 2, { status = "success", finished_at = 4000.5, output = big,
                                      log = "", mem_peak = 123, rows_in = 5, rows_out = 6 })
      s:task_succeeded("r", "a", big, 4000.5, 5, 6)
      s:commit()
      assert.same({ run_id = "r", task = "a", state = "success", attempts = 2, output = big,
                    started_at = 1000.25, finished_at = 4000.5, next_try_at = 2500.75,
                    rows_in = 5, rows_out = 6 }, s:tasks("r")[3])
      local a = s:attempts("r")
      assert.equal(2, #a)
      assert.same({ 1, 2 }, { a[1].attempt, a[2].attempt })
      assert.same({ "success", "", 123, big }, { a[2].status, a[2].log, a[2].mem_peak, a[2].output })
      assert.is_nil(a[2].error)

      -- a log from user code may hold any bytes: the write succeeds and
      -- the text around them survives
      s:begin()
      s:start_attempt("r", "b", 1, 5000, 5000, 1)
      s:update_attempt("r", "b", 1, { status = "failed", log = "ok \0 \255\254 ok", error = "\200" })
      s:commit()
      local lb = s:attempts("r")[3]
      assert.matches("^ok ", lb.log)
      assert.matches(" ok$", lb.log)
      assert.truthy(lb.error)
    end)

    it("applies the hot path's writes in order, inside and outside transactions", function()
      local s, other = open(), open()
      seed(s, "r")
      s:add_tasks("r", { "a", "b", "c" })
      local function attempt(task, n)
        for _, a in ipairs(s:attempts("r")) do
          if a.task == task and a.attempt == n then return a end
        end
      end
      local function task(name)
        for _, t in ipairs(s:tasks("r")) do if t.task == name then return t end end
      end
      -- outside a transaction: each call stands alone
      s:start_attempt("r", "a", 1, 10, 10, 1)
      s:finish_attempt("r", "a", 1, { status = "success", finished_at = 11, output = "1" })
      s:task_succeeded("r", "a", "1", 11, 1, 2)
      assert.same({ "success", 11, "1" }, { attempt("a", 1).status, attempt("a", 1).finished_at,
                                            attempt("a", 1).output })
      assert.same({ "success", 1, 1, 2 }, { task("a").state, task("a").attempts, task("a").rows_in,
                                            task("a").rows_out })
      -- inside one: a read sees the transaction's writes; others see them
      -- at commit, all of them
      s:begin()
      s:start_attempt("r", "b", 1, 20, 20, 2)
      s:start_attempt("r", "c", 1, 21, 21, 3)
      assert.equal("running", attempt("b", 1).status)
      s:finish_attempt("r", "b", 1, { status = "success", finished_at = 22, output = "2",
                                      rows_in = 3 })
      s:task_succeeded("r", "b", "2", 22, 3, 0)
      -- the same row twice in one step: the later write wins
      s:start_attempt("r", "c", 2, 23, 21, 4)
      s:start_attempt("r", "c", 2, 24, 21, 5)
      assert.is_nil(other:attempts("r")[2])
      s:commit()
      local b, c2 = other:attempts("r")[2], other:attempts("r")[4]
      assert.same({ "b", 1, "success", 22, "2", 3 }, { b.task, b.attempt, b.status, b.finished_at,
                                                       b.output, b.rows_in })
      assert.is_nil(b.rows_out)
      assert.same({ "c", 2, "running", 24, 5 }, { c2.task, c2.attempt, c2.status, c2.started_at,
                                                  c2.worker_pid })
      assert.same({ "success", "2", 22 }, { task("b").state, task("b").output,
                                            task("b").finished_at })
      assert.same({ "running", 2, 21 }, { task("c").state, task("c").attempts,
                                          task("c").started_at })
      -- a rollback drops what waited
      s:begin()
      s:task_succeeded("r", "c", "3", 30, 0, 0)
      s:rollback()
      assert.equal("running", task("c").state)
    end)

    it("lists runs newest first, limited, optionally of one pipeline", function()
      local s = open()
      for i = 1, 23 do
        seed(s, string.format("run-%02d", i), { pipeline = i % 2 == 0 and "even" or "odd",
                                                created_at = 1000 + i })
      end
      local all = s:runs()
      assert.equal(20, #all)
      assert.equal("run-23", all[1].id)
      assert.equal("run-04", all[20].id)
      local three = s:runs(3)
      assert.same({ "run-23", "run-22", "run-21" }, { three[1].id, three[2].id, three[3].id })
      assert.same({ "odd", "even" }, { three[1].pipeline, three[2].pipeline })
      local even = s:runs(100, "even")
      assert.equal(11, #even)
      for i, r in ipairs(even) do
        assert.equal("even", r.pipeline)
        assert.equal(string.format("run-%02d", 24 - 2 * i), r.id)
      end
      assert.same({}, s:runs(5, "nobody"))
      assert.same(s:run("run-23"), all[1])
    end)

    -- weir serve's tables (migration 3)

    -- the error value a call raises (fails the test when it raises none)
    local function raised(fn, ...)
      local ok, err = pcall(fn, ...)
      assert.is_false(ok, "expected an error")
      return err
    end

    it("lists pipelines with their versions, newest version first", function()
      local s = open()
      assert.same({}, s:pipelines())
      local a1 = s:pipeline_version("b_pipe", "lua", "/p/b.lua", "return 1", "h1", 1000)
      local a2 = s:pipeline_version("b_pipe", "yaml", "/p/b.yaml", "x: 1", "h2", 2000.5)
      local a3 = s:pipeline_version("b_pipe", "lua", "/p/b.lua", "return 3", "h3", 2000.5)
      s:pipeline_version("b_pipe", "lua", "/p/b.lua", "return 1", "h1", 3000)   -- known
      local c1, cp = s:pipeline_version("a_pipe", "lua", "/p/a.lua", "return 1", "h1", 500)
      local list = s:pipelines()
      assert.same({ { name = "a_pipe", id = cp, created_at = 500, versions = 1,
                      latest_version_id = c1 },
                    { name = "b_pipe", id = s:version(a1).pipeline_id, created_at = 1000,
                      versions = 3, latest_version_id = a3 } }, list)
      local vs = s:versions("b_pipe")
      assert.same({ a3, a2, a1 }, { vs[1].id, vs[2].id, vs[3].id })
      assert.same({ id = a2, hash = "h2", kind = "yaml", path = "/p/b.yaml", created_at = 2000.5 },
                  vs[2])
      assert.is_nil(vs[1].source)
      assert.same({}, s:versions("nobody"))
    end)

    it("keeps users: one per name, disabled or not, listed by name without hashes", function()
      local s, other = open(), open()
      assert.equal(0, s:principals())
      s:users_add("zoe", "viewer", "$scrypt$zoe", 1000.5)
      s:users_add("Ann", "admin", "$scrypt$ann", 2000)
      s:users_add("bob", "operator", "$scrypt$bob", 3000)
      assert.same({ name = "zoe", role = "viewer", password_hash = "$scrypt$zoe", disabled = false,
                    created_at = 1000.5 }, other:user("zoe"))
      assert.is_nil(s:user("nobody"))
      assert.is_nil(s:user("ZOE"))
      local err = raised(s.users_add, s, "zoe", "admin", "$scrypt$other", 4000)
      assert.equal("conflict", err.code)
      assert.equal("user zoe already exists", tostring(err))
      assert.equal("viewer", s:user("zoe").role)
      assert.equal(3, s:principals())
      assert.is_true(s:user_set_disabled("zoe", true))
      assert.is_true(s:user("zoe").disabled)
      assert.is_false(s:user_set_disabled("nobody", true))
      assert.equal(2, other:principals())
      assert.same({ { name = "Ann", role = "admin", disabled = false, created_at = 2000 },
                    { name = "bob", role = "operator", disabled = false, created_at = 3000 },
                    { name = "zoe", role = "viewer", disabled = true, created_at = 1000.5 } },
                  other:users())
      assert.is_true(s:user_set_disabled("zoe", false))
      assert.is_false(s:user("zoe").disabled)
      assert.equal(3, s:principals())
      -- a conflict inside a transaction leaves it usable: the rest commits
      s:begin()
      s:users_add("cy", "developer", "h", 5000)
      assert.equal("conflict", raised(s.users_add, s, "bob", "admin", "h", 5000).code)
      s:user_set_disabled("bob", true)
      assert.is_nil(other:user("cy"))
      s:commit()
      assert.same({ "developer", true }, { other:user("cy").role, other:user("bob").disabled })
      -- a user scoped to some pipelines keeps its scope
      s:users_add("scoped", "viewer", "h", 6000, '["a","b"]')
      assert.equal('["a","b"]', other:user("scoped").pipelines)
      assert.is_nil(other:user("cy").pipelines)
    end)

    it("fires a pipeline's logical time once, with its run, and keeps the schedule's state", function()
      local s, other = open(), open()
      local _, pid = s:pipeline_version("sch", "lua", "/x/sch.lua", "return 1", "h1", 1)
      local vid = s:pipeline_version("sch", "lua", "/x/sch.lua", "return 1", "h1", 1)
      s:begin()
      local st = s:schedule_state(pid, 1000)
      s:commit()
      assert.same({ false, 1000 }, { st.paused and true or false, st.since })
      local function run(id, lt)
        return { id = id, pipeline_id = pid, version_id = vid, status = "queued", params = "{}",
                 options = "{}", created_at = 2000, logical_time = lt }
      end
      assert.is_true(s:fire(pid, 60000, "schedule", run("f1", 60000), 2000))
      assert.is_false(other:fire(pid, 60000, "schedule", run("f2", 60000), 2001))
      assert.is_nil(other:run("f2"))                 -- nothing of the refused fire
      assert.equal(60000, other:run("f1").logical_time)
      assert.is_true(other:fire(pid, 120000, "schedule", run("f3", 120000), 2002))
      s:begin()
      s:schedule_skip(pid, 90000)                    -- never moves back
      s:schedule_pause(pid, true, 3000)
      s:commit()
      s:begin()
      st = s:schedule_state(pid, 9999)
      s:commit()
      assert.same({ true, 1000, 120000 }, { st.paused and true or false, st.since, st.last_fire })
    end)

    it("fires a trigger's key once, moves its state only from what it was, finds successes", function()
      local s, other = open(), open()
      local vid, pid = s:pipeline_version("trg", "lua", "/x/trg.lua", "return 1", "h1", 1)
      local function run(id, status, created, finished)
        return { id = id, pipeline_id = pid, version_id = vid, status = status or "queued",
                 params = "{}", options = "{}", created_at = created or 2000,
                 finished_at = finished }
      end
      assert.is_true(s:trigger_fire(pid, "files", "inbox/a.csv|1:2|3|4", run("t1"), 2000))
      assert.is_false(other:trigger_fire(pid, "files", "inbox/a.csv|1:2|3|4", run("t2"), 2001))
      assert.is_nil(other:run("t2"))
      assert.is_true(other:trigger_fire(pid, "after", "inbox/a.csv|1:2|3|4", run("t3", nil, 2002), 2002))
      s:begin()
      assert.equal("100", s:trigger_state(pid, "dataset", "100"))
      assert.equal("100", s:trigger_state(pid, "dataset", "999")) -- set once
      assert.is_true(s:trigger_advance(pid, "dataset", "100", "120"))
      s:commit()
      other:begin()
      assert.is_false(other:trigger_advance(pid, "dataset", "100", "130")) -- moved already
      other:commit()
      assert.equal(2002, s:latest_created(pid))
      assert.is_nil(s:latest_success("trg"))
      for _, r in ipairs({ run("t4", "success", 3000, 5000), run("t5", "success", 3100, 4000),
                           run("t6", "failed", 3200, 6000) }) do
        s:create_run(r)
        s:update_run(r.id, { finished_at = r.finished_at })
      end
      assert.same({ id = "t4", finished_at = 5000 }, s:latest_success("trg"))
      assert.is_nil(s:latest_success("nothing"))
    end)

    it("claims webhook signatures once, across connections, and prunes old ones", function()
      local s, other = open(), open()
      assert.is_true(s:hook_claim("p", { "aa", "bb" }, 1000))
      assert.is_false(other:hook_claim("p", { "bb" }, 1001))    -- seen: a replay
      assert.is_false(other:hook_claim("p", { "cc", "aa" }, 1001))
      assert.is_true(other:hook_claim("q", { "aa" }, 1001))     -- another pipeline's
      assert.is_true(s:hook_claim("p", { "dd" }, 5000))
      assert.equal(4, s:hook_prune(2000))                       -- aa, bb, cc (p) and aa (q)
      assert.is_true(other:hook_claim("p", { "aa" }, 6000))     -- forgotten: claimable again
      assert.is_false(s:hook_claim("p", { "dd" }, 6000))
    end)

    it("keeps API keys hashed: revoked once, last use moving forward only", function()
      local s, other = open(), open()
      s:key_add({ id = "k2", name = "ci", role = "operator", hash = "sha256:2", created_at = 2000 })
      s:key_add({ id = "k1", name = "etl", role = "viewer", hash = "sha256:1", created_at = 1000.5 })
      s:key_add({ id = "k3", name = "ci", role = "admin", hash = "sha256:3", created_at = 2000 })
      assert.same({ id = "k1", name = "etl", role = "viewer", hash = "sha256:1",
                    created_at = 1000.5 }, other:key("k1"))
      assert.is_nil(s:key("k9"))
      local err = raised(s.key_add, s, { id = "k1", name = "x", role = "admin", hash = "h",
                                         created_at = 1 })
      assert.same({ "conflict", "API key k1 already exists" }, { err.code, tostring(err) })
      assert.equal("sha256:1", s:key("k1").hash)
      assert.equal(3, s:principals())
      s:key_used("k1", 5000)
      s:key_used("k1", 4000)   -- an older use, recorded late
      assert.equal(5000, other:key("k1").last_used_at)
      s:key_used("k9", 5000)
      assert.is_true(s:key_revoke("k2", 6000))
      assert.is_true(s:key_revoke("k2", 7000))
      assert.is_false(s:key_revoke("k9", 6000))
      assert.equal(6000, other:key("k2").revoked_at)
      assert.equal(2, other:principals())
      s:users_add("u", "admin", "h", 1)
      assert.equal(3, other:principals())
      assert.same({ { id = "k1", name = "etl", role = "viewer", created_at = 1000.5,
                      last_used_at = 5000 },
                    { id = "k2", name = "ci", role = "operator", created_at = 2000,
                      revoked_at = 6000 },
                    { id = "k3", name = "ci", role = "admin", created_at = 2000 } }, other:keys())
      -- a key scoped to some pipelines keeps its scope
      s:key_add({ id = "k4", name = "one", role = "viewer", hash = "h", created_at = 3000,
                  pipelines = '["orders"]' })
      assert.equal('["orders"]', other:key("k4").pipelines)
      assert.equal('["orders"]', other:keys()[4].pipelines)
    end)

    it("appends to the audit log with increasing ids, read newest first by pages", function()
      local s, other = open(), open()
      assert.same({}, s:audit(10))
      local ids = {}
      for i = 1, 25 do
        ids[i] = s:audit_add({ at = 1000 + i + 0.5, principal = i % 2 == 0 and "user:ann" or nil,
                               address = "10.0.0." .. i, method = "POST",
                               path = "/api/v1/pipelines/p/runs", status = i % 3 == 0 and 403
                                 or 202, outcome = i % 3 == 0 and "denied" or "ok",
                               request_id = "req-" .. i,
                               detail = i == 1 and '{"run":"r1","why":"ünï\\n"}' or nil })
        if i > 1 then assert.truthy(ids[i] > ids[i - 1]) end
      end
      assert.same({ id = ids[1], at = 1001.5, address = "10.0.0.1", method = "POST",
                    path = "/api/v1/pipelines/p/runs", status = 202, outcome = "ok",
                    request_id = "req-1", detail = '{"run":"r1","why":"ünï\\n"}' },
                  other:audit(1, ids[2])[1])
      local seen, before, pages = {}, nil, 0
      repeat
        local page = other:audit(10, before)
        pages = pages + 1
        for _, r in ipairs(page) do
          -- strictly decreasing: none twice
          if before then assert.truthy(r.id < before) end
          seen[#seen + 1] = r.id
          before = r.id
        end
      until #page < 10
      assert.equal(3, pages)
      assert.equal(25, #seen)
      for i = 1, 25 do assert.equal(ids[26 - i], seen[i]) end
      assert.equal(20, #s:audit())
      assert.same({}, s:audit(5, ids[1]))
      -- what is required
      assert.has_error(function() s:audit_add({ at = 1, method = "GET", path = "/" }) end)
      -- inside a transaction, with the rest
      s:begin()
      local id = s:audit_add({ at = 2000, method = "DELETE", path = "/x", status = 204,
                               outcome = "ok" })
      assert.equal(ids[25], other:audit(1)[1].id)
      s:commit()
      assert.equal(id, other:audit(1)[1].id)
      assert.truthy(id > ids[25])
    end)

    it("keeps one idempotency key per scope, refuses a second, prunes old ones", function()
      local s, other = open(), open()
      seed(s, "r1")
      assert.is_nil(s:idem_get("user:ann", "k"))
      s:idem_put("user:ann", "k", "sha-body-1", "r1", 1000.5)
      s:idem_put("user:bob", "k", "sha-body-2", "r2", 2000)     -- another scope
      s:idem_put("user:ann", "k2", "sha-body-1", nil, 3000)     -- no run (yet)
      assert.same({ scope = "user:ann", key = "k", body_hash = "sha-body-1", run_id = "r1",
                    created_at = 1000.5 }, other:idem_get("user:ann", "k"))
      assert.equal("r2", other:idem_get("user:bob", "k").run_id)
      assert.is_nil(other:idem_get("user:ann", "k2").run_id)
      local err = raised(other.idem_put, other, "user:ann", "k", "sha-body-9", "r9", 4000)
      assert.same({ "conflict", "idempotency key already exists" }, { err.code, tostring(err) })
      assert.equal("sha-body-1", s:idem_get("user:ann", "k").body_hash)
      -- a second put in a transaction of its own: refused, the first one's
      -- run stays, and the transaction goes on
      other:begin()
      assert.equal("conflict", raised(other.idem_put, other, "user:bob", "k", "x", "r3", 1).code)
      other:idem_put("user:bob", "k3", "x", "r3", 1)
      other:commit()
      assert.equal("r3", s:idem_get("user:bob", "k3").run_id)
      assert.equal(2, s:idem_prune(2000))   -- strictly older: 1 and 1000.5
      assert.is_nil(s:idem_get("user:ann", "k"))
      assert.is_nil(s:idem_get("user:bob", "k3"))
      assert.truthy(s:idem_get("user:bob", "k"))
      assert.equal(0, s:idem_prune(2000))
      assert.equal(2, s:idem_prune(1e15))
      assert.is_nil(s:idem_get("user:ann", "k2"))
    end)

    it("gives the queue of a status oldest first, ties by id", function()
      local s = open()
      seed(s, "r-b", { created_at = 2000 })
      seed(s, "r-a", { created_at = 2000 })
      seed(s, "r-c", { created_at = 1000.5, pipeline = "other" })
      seed(s, "r-d", { created_at = 500, status = "running" })
      seed(s, "r-e", { created_at = 3000 })
      local q = s:runs_by_status("queued")
      local ids = {}
      for i, r in ipairs(q) do ids[i] = r.id end
      assert.same({ "r-c", "r-a", "r-b", "r-e" }, ids)
      assert.same(s:run("r-c"), q[1])
      assert.equal("other", q[1].pipeline)
      local two = s:runs_by_status("queued", 2)
      assert.same({ "r-c", "r-a" }, { two[1].id, two[2].id })
      assert.same({ "r-d" }, { s:runs_by_status("running", 10)[1].id })
      assert.same({}, s:runs_by_status("cancelled", 10))
    end)

    it("pages runs newest first by cursor, with filters, none twice and none missed", function()
      local s = open()
      -- 37 runs over 3 pipelines; many share a created_at
      local all = {}
      for i = 1, 37 do
        local id = string.format("run-%02d", (i * 17) % 37)
        local r = { id = id, pipeline = ({ "a", "b", "c" })[i % 3 + 1],
                    status = i % 4 == 0 and "failed" or "success", created_at = 1000 + (i % 5) * 0.5 }
        seed(s, id, r)
        all[#all + 1] = r
      end
      table.sort(all, function(x, y)
        if x.created_at ~= y.created_at then return x.created_at > y.created_at end
        return x.id > y.id
      end)
      local function walk(q, size)
        local got, pages, cursor = {}, 0, nil
        repeat
          q.limit, q.after = size, cursor
          local rows, next_ = s:runs_page(q)
          pages = pages + 1
          assert.truthy(pages <= 40, "the pages do not end")
          assert.truthy(#rows <= size)
          if next_ then assert.equal(size, #rows) end
          for _, r in ipairs(rows) do got[#got + 1] = r end
          cursor = next_
        until not cursor
        return got, pages
      end
      local function ids(rows)
        local out = {}
        for i, r in ipairs(rows) do out[i] = r.id end
        return out
      end
      local want = ids(all)
      for _, size in ipairs({ 1, 5, 10, 37, 100 }) do
        local got, pages = walk({}, size)
        assert.same(want, ids(got))
        assert.equal(math.max(1, math.ceil(37 / size)), pages)
      end
      local first = s:runs_page({ limit = 3 })
      assert.same(s:run(want[1]), first[1])
      assert.equal(20, #s:runs_page({}))
      -- each filter, and all of them together
      local function filtered(pred)
        local out = {}
        for _, r in ipairs(all) do if pred(r) then out[#out + 1] = r.id end end
        return out
      end
      local cases = {
        { { pipeline = "b" }, function(r) return r.pipeline == "b" end },
        { { status = "failed" }, function(r) return r.status == "failed" end },
        { { since = 1001 }, function(r) return r.created_at >= 1001 end },
        { { until_ = 1001 }, function(r) return r.created_at < 1001 end },
        { { since = 1000.5, until_ = 1001.5 },
          function(r) return r.created_at >= 1000.5 and r.created_at < 1001.5 end },
        { { pipeline = "a", status = "success", since = 1000.5, until_ = 1002 },
          function(r) return r.pipeline == "a" and r.status == "success"
                             and r.created_at >= 1000.5 and r.created_at < 1002 end },
      }
      for _, c in ipairs(cases) do
        local expect = filtered(c[2])
        assert.truthy(#expect > 0)
        assert.same(expect, ids((walk(c[1], 2))))
        assert.same(expect, ids((walk(c[1], 50))))
      end
      assert.same({}, (s:runs_page({ pipeline = "nobody" })))
      assert.is_nil(select(2, s:runs_page({ pipeline = "nobody" })))
      -- values stay values
      assert.same({}, (s:runs_page({ pipeline = "a' OR '1'='1" })))
      -- a cursor made elsewhere is refused as such
      for _, bad in ipairs({ "", "zz", "abc", "00", string.rep("41", 10), "2031" }) do
        local err = raised(s.runs_page, s, { after = bad })
        assert.equal("invalid", err.code, bad)
      end
      assert.has_error(function() s:runs_page({ limit = 0 }) end)
      -- the cursor of an id with any bytes and a created_at with all its digits
      local odd = "odd id ü/%+ x"
      seed(s, odd, { created_at = 1000.1 })
      local page, cur = s:runs_page({ until_ = 1000.2, limit = 1 })
      assert.same({ odd, "string" }, { page[1].id, type(cur) })
      assert.is_nil(cur:find("[^%x]"))
      page = s:runs_page({ until_ = 1000.2, after = cur })
      assert.same(filtered(function(r) return r.created_at < 1000.1 end), ids(page))
    end)

    it("lets one claimer take a queued run, atomically", function()
      local s, other = open(), open()
      seed(s, "q1")
      seed(s, "q2", { status = "failed" })
      assert.is_true(s:claim_queued("q1", 111, "sup-1"))
      assert.is_false(other:claim_queued("q1", 222, "sup-2"))
      assert.is_false(s:claim_queued("q1", 111, "sup-1"))   -- running now
      local r = other:run("q1")
      assert.same({ "running", 111, "sup-1" }, { r.status, r.supervisor_pid, r.supervisor_id })
      assert.is_false(other:claim_queued("q2", 222, "sup-2"))
      assert.equal("failed", s:run("q2").status)
      assert.is_false(other:claim_queued("no-such-run", 222, "sup-2"))
      -- inside the caller's transaction: its rollback undoes the claim
      seed(s, "q3")
      s:begin()
      assert.is_true(s:claim_queued("q3", 111, "sup-1"))
      s:update_run("q3", { started_at = 5 })
      s:rollback()
      assert.same({ "queued" }, { other:run("q3").status, other:run("q3").started_at })
      assert.is_true(other:claim_queued("q3", 222, "sup-2"))
      assert.equal(222, s:run("q3").supervisor_pid)
      if B.name == "postgres" then
        -- the claim holds the run's lock, as update_run(running) does,
        -- until the run ends
        s:begin()
        local ok, err = pcall(s.update_run, s, "q3", { status = "running", supervisor_pid = 1 })
        assert.is_false(ok)
        assert.matches("run q3 is running under another supervisor", tostring(err), 1, true)
        s:rollback()
        other:begin()
        other:update_run("q3", { status = "queued" })
        other:commit()
        assert.is_true(s:claim_queued("q3", 111, "sup-1"))
        -- a claim not yet committed: another session's claim fails at
        -- once (no wait for the row), then wins after the rollback
        seed(s, "q4")
        s:begin()
        assert.is_true(s:claim_queued("q4", 111, "sup-1"))
        assert.is_false(other:claim_queued("q4", 222, "sup-2"))
        s:rollback()
        assert.is_true(other:claim_queued("q4", 222, "sup-2"))
      end
    end)

    it("lets concurrent supervisors drain the queue, each run taken once", function()
      local s = open()
      local want = {}
      for i = 1, 30 do
        local id = string.format("q-%02d", i)
        seed(s, id, { created_at = 1000 + i % 4 })
        want[#want + 1] = id
      end
      H.write(dir .. "/drain.lua", [[
        local s = assert(require("weir.store").open(arg[1]))
        local out = assert(io.open(arg[2], "w"))
        while true do
          local q = s:runs_by_status("queued", 3)
          if #q == 0 then break end
          for _, r in ipairs(q) do
            if s:claim_queued(r.id, 1, arg[2]) then out:write(r.id, "\n"); out:flush() end
          end
        end
        out:close()
        s:close()
      ]])
      local codes, outs = {}, {}
      for i = 1, 4 do
        codes[i], outs[i] = dir .. "/drain" .. i .. ".code", dir .. "/drain" .. i .. ".out"
        H.spawn(dir, "script drain.lua " .. H.q(dir .. "/.weir") .. " " .. H.q(outs[i]),
                dir .. "/drain" .. i .. ".log", { WEIR_METADATA_URL = url }, codes[i])
      end
      local got = {}
      for i = 1, 4 do
        assert.truthy(H.wait_for(function() return (H.read(codes[i]) or ""):find("\n") end, 60))
        assert.equal("0\n", H.read(codes[i]), H.read(dir .. "/drain" .. i .. ".log"))
        for id in H.read(outs[i]):gmatch("[^\n]+") do
          assert.is_nil(got[id], id .. " taken twice")
          got[id] = outs[i]
        end
      end
      for _, id in ipairs(want) do
        local r = s:run(id)
        assert.equal("running", r.status)
        assert.equal(got[id], r.supervisor_id, id)
      end
      assert.same({}, s:runs_by_status("queued"))
    end)

    it("makes a second claimer of a run wait for the first one's claim, then see it", function()
      local s = open()
      seed(s, "claimed", { status = "failed" })
      H.write(dir .. "/claim.lua", [[
        local out = assert(io.open(arg[2], "w"))
        local s = assert(require("weir.store").open(arg[1]))
        out:write("opened\n"); out:flush()
        s:begin()
        local r = s:run(arg[3])
        out:write(r.status, " ", tostring(r.supervisor_pid), "\n")
        out:close()
        s:rollback()
        s:close()
      ]])
      -- the first claim: check and set running in one transaction
      s:begin()
      assert.equal("failed", s:run("claimed").status)
      s:update_run("claimed", { status = "running", supervisor_pid = 4242 })
      local out = dir .. "/claim.out"
      H.spawn(dir, "script claim.lua " .. H.q(dir .. "/.weir") .. " " .. H.q(out) .. " claimed",
              dir .. "/claim.log", { WEIR_METADATA_URL = url })
      assert.truthy(H.wait_for(function() return H.read(out) end, 10), H.read(dir .. "/claim.log"))
      os.execute("sleep 0.8")
      -- the second claimer is still waiting for the first transaction
      assert.equal("opened\n", H.read(out))
      s:commit()
      assert.truthy(H.wait_for(function() return (H.read(out) or ""):find("\n.") end, 10))
      assert.equal("opened\nrunning 4242\n", H.read(out))
    end)

    if B.name == "postgres" then
      it("lets one session at a time hold a run running, on any host", function()
        local s1, s2 = open(), open()
        seed(s1, "r", { status = "failed" })
        s1:begin()
        s1:update_run("r", { status = "running", supervisor_pid = 1 })
        s1:commit()
        -- another supervisor (its pid check cannot see a remote one)
        s2:begin()
        assert.equal("running", s2:run("r").status)
        local ok, err = pcall(s2.update_run, s2, "r", { status = "running", supervisor_pid = 2 })
        assert.is_false(ok)
        assert.matches("postgres metadata: run r is running under another supervisor", err, 1, true)
        s2:rollback()
        assert.equal(1, s2:run("r").supervisor_pid)
        -- the run ends: the lock goes with the commit
        s1:begin()
        s1:update_run("r", { status = "failed" })
        s1:commit()
        s2:begin()
        s2:update_run("r", { status = "running", supervisor_pid = 2 })
        s2:commit()
        -- a session that ends (a killed supervisor) lets go too
        s1:begin()
        assert.has_error(function() s1:update_run("r", { status = "running" }) end)
        s1:rollback()
        s2:close()
        s1:begin()
        s1:update_run("r", { status = "running", supervisor_pid = 1 })
        s1:commit()
        assert.equal(1, s1:run("r").supervisor_pid)
      end)

      it("replaces a lost connection between transactions and keeps its run locks", function()
        local s, other = open(), open()
        seed(s, "r")
        s:begin()
        s:update_run("r", { status = "running", supervisor_pid = 1 })
        s:commit()
        local db = url:match("^[^/]*//[^/]*/([^?]*)")
        local function kill_sessions()
          local a = admin()
          local rows = a:all("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
                             .. "WHERE datname = $1 AND application_name = 'weir metadata'",
                             { db })
          assert.truthy(#rows >= 2)
          os.execute("sleep 0.2")
        end
        kill_sessions()
        -- outside a transaction: reconnects, takes its lock back
        assert.equal("running", s:run("r").status)
        assert.equal("running", other:run("r").status)
        other:begin()
        assert.has_error(function() other:update_run("r", { status = "running" }) end)
        other:rollback()
        -- inside one: the transaction fails, the next one works
        s:begin()
        s:set_task("r", "none", { state = "queued" })
        kill_sessions()
        local ok, err = pcall(s.update_run, s, "r", { error = "x" })
        assert.is_false(ok)
        local code = tostring(err):match("^postgres metadata: %[(%w+)%]")
        assert.truthy(code and (code:sub(1, 2) == "08" or code == "57P01"), err)
        s:rollback()
        s:begin()
        s:update_run("r", { error = "y" })
        s:commit()
        assert.equal("y", other:run("r").error)
      end)

      -- statements on the store's database as the test server's role, or
      -- as role (password pw), with the session's default search_path
      local function as(role, pw)
        local cfg = assert(require("weir.store.postgres").config(url))
        cfg.name, cfg.user, cfg.password = "store_as_" .. (role or "admin"), role or cfg.user,
          pw or cfg.password
        return require("weir.connectors.postgres").connect(cfg)
      end
      local roles = {}
      local function new_role(attrs)
        local name = string.format("weir_spec_%d_%d", #roles + 1, math.random(1, 1e9))
        admin():run(string.format("CREATE ROLE %s LOGIN PASSWORD 'pw-%s' %s", name, name,
                                  attrs or ""))
        roles[#roles + 1] = name
        return name, "pw-" .. name
      end
      after_each(function()
        require("weir.connectors.postgres").close_all()
        B.drop(url)
        for _, r in ipairs(roles) do admin():run("DROP ROLE IF EXISTS " .. r) end
        roles = {}
      end)
      -- the SQLSTATE of sql run as role, or "ok"
      local function try_as(role, pw, sql)
        local ok, err = pcall(function() as(role, pw):run(sql) end)
        return ok and "ok" or tostring(err):match("%[(%w+)%]") or tostring(err)
      end

      it("keeps its tables in a schema of its own that other roles cannot use", function()
        local s = open()
        seed(s, "r1")
        local where = B.raw(url, "SELECT string_agg(DISTINCT schemaname, ',') AS s, count(*) AS n "
                                 .. "FROM pg_tables WHERE tablename IN ('schema_migrations', "
                                 .. "'pipelines', 'pipeline_versions', 'runs', 'task_runs', "
                                 .. "'attempts')")[1]
        assert.same({ "weir", 6 }, { where.s, where.n })
        local grants = B.raw(url, "SELECT has_schema_privilege('public', 'weir', 'USAGE') AS u, "
                                  .. "(SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
                                  .. "WHERE c.relnamespace = 'weir'::regnamespace "
                                  .. "AND a.grantee = 0) AS t")[1]
        assert.same({ false, 0 }, { grants.u, grants.t })
        -- another role on the same database reads and changes nothing
        local role, pw = new_role()
        for _, sql in ipairs({ "SELECT * FROM weir.runs", "SELECT source FROM weir.pipeline_versions",
                               "UPDATE weir.runs SET status = 'success'",
                               "UPDATE weir.pipeline_versions SET source = 'x'",
                               "CREATE TABLE weir.runs2 (a int)" }) do
          assert.equal("42501", try_as(role, pw, sql), sql)
        end
        -- a schema it may not use is not even on its search_path
        assert.equal("42P01", try_as(role, pw, "SET search_path TO weir; SELECT * FROM runs"))
        assert.equal("ok", try_as(role, pw, "SELECT 1"))
        assert.same({ "queued", "return 1" }, { s:run("r1").status, s:version(1).source })
      end)

      it("names the weir.yaml connection through which tasks could reach its tables", function()
        local s = open()
        local me = B.raw(url, "SELECT current_user AS u")[1].u
        local plain = new_role()
        local super = new_role("SUPERUSER")
        local member = new_role()
        local reader = new_role()
        admin():run("GRANT " .. me .. " TO " .. member)
        as():run("GRANT USAGE ON SCHEMA weir TO " .. reader)
        local port = tonumber(PG_URL:match(":(%d+)/"))
        local function conn(user, extra)
          local c = { type = "postgres", hostaddr = "127.0.0.1", port = port, user = user,
                      database = "elsewhere" }
          for k, v in pairs(extra or {}) do c[k] = v end
          return { wh = c }
        end
        assert.is_nil(s:reachable_by({}))
        assert.is_nil(s:reachable_by(conn(plain)))
        assert.is_nil(s:reachable_by(conn("no_such_role")))
        assert.is_nil(s:reachable_by({ r = { type = "redis", hostaddr = "127.0.0.1", port = port,
                                             user = me } }))
        -- the same role on another server (port) is another role
        assert.is_nil(s:reachable_by(conn(me, { port = port + 1 })))
        local cases = {
          { me, "as the metadata store's own role " .. me },
          { super, "as role " .. super .. ", a superuser" },
          { member, "as role " .. member .. ", a member of the metadata store's role " .. me },
          { reader, "as role " .. reader .. ", which may use weir's schema weir" },
        }
        for _, c in ipairs(cases) do
          local msg = s:reachable_by(conn(c[1]))
          assert.matches("connection wh reaches the metadata store's server " .. c[2] .. ":", msg,
                         1, true)
          assert.matches("a role of its own", msg, 1, true)
        end
        -- any loopback address reaches a server the store reached on one,
        -- or through its socket
        assert.truthy(s:reachable_by(conn(me, { hostaddr = "::1" })))
        local sock = os.getenv("WEIR_TEST_PG_DATA")
        if sock then
          local host = sock:gsub("/", "%%2F")
          local by_socket = url:gsub("@127%.0%.0%.1:", function() return "@" .. host .. ":" end)
          local s2 = assert(require("weir.store").open(dir .. "/.weir", by_socket))
          opened[#opened + 1] = s2
          assert.matches("as the metadata store's own role", s2:reachable_by(conn(me)), 1, true)
          assert.is_nil(s2:reachable_by(conn(me, { hostaddr = "192.0.2.1" })))
        end
        -- the first connection in name order is named
        local two = conn(plain)
        two.b_wh, two.a_wh = conn(super).wh, conn(me).wh
        assert.matches("^connection a_wh ", s:reachable_by(two))
      end)

      it("moves the tables of an older weir into its schema, with their rows", function()
        -- the layout before: the first migration in the first schema of
        -- the role's search_path (public), and a run in it
        local P = require("weir.store.postgres")
        as():run(P.MIGRATIONS[1] .. "; CREATE TABLE schema_migrations (version integer PRIMARY "
                 .. "KEY, applied_at double precision NOT NULL); INSERT INTO schema_migrations "
                 .. "VALUES (1, 0); INSERT INTO pipelines (name, created_at) VALUES ('old', 1); "
                 .. "INSERT INTO pipeline_versions (pipeline_id, hash, kind, path, source, "
                 .. "created_at) VALUES (1, 'h0', 'lua', '/p.lua', 'return 0', 1); "
                 .. "INSERT INTO runs (id, pipeline_id, version_id, status, params, options, "
                 .. "created_at) VALUES ('old-run', 1, 1, 'failed', '{}', '{}', 5); "
                 .. "GRANT SELECT ON runs TO PUBLIC")
        local s = open()
        assert.equal(P.LATEST, s:schema_version())
        local r = s:run("old-run")
        assert.same({ "old", "failed", "return 0" }, { r.pipeline, r.status,
                                                       s:version(r.version_id).source })
        -- the identities go on from where they were; later migrations applied
        local vid, pid = seed(s, "new-run", { pipeline = "old", hash = "h1" })
        assert.same({ 2, 1 }, { vid, pid })
        s:begin()
        s:update_run("old-run", { supervisor_id = "x" })
        s:commit()
        local left = as():all("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'")
        assert.equal(0, left[1].n)
        -- what the old place granted to PUBLIC is taken back
        local grants = B.raw(url, "SELECT count(*) AS n FROM pg_class c, aclexplode(c.relacl) a "
                                  .. "WHERE c.relnamespace = 'weir'::regnamespace AND a.grantee = 0")
        assert.equal(0, grants[1].n)
        -- concurrent and later openers find them where they are now
        s:close()
        assert.equal("failed", open():run("old-run").status)
      end)

      it("refuses a schema another role owns, and takes another by ?schema=", function()
        local other = new_role()
        as():run("CREATE SCHEMA weir AUTHORIZATION " .. other)
        local s, err = require("weir.store").open(dir .. "/.weir", url)
        assert.is_nil(s)
        assert.matches("schema weir belongs to role " .. other .. ", not to the store's role",
                       tostring(err), 1, true)
        assert.matches("ALTER SCHEMA", tostring(err), 1, true)
        s = assert(require("weir.store").open(dir .. "/.weir", url .. "?schema=weir_meta"))
        opened[#opened + 1] = s
        seed(s, "r")
        local n = as():all("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'weir_meta'")
        local made = 1 -- schema_migrations, and each table of the migrations
        for _, sql in pairs(require("weir.store.postgres").MIGRATIONS) do
          for _ in sql:gmatch("CREATE TABLE") do made = made + 1 end
        end
        assert.equal(made, n[1].n)
        for _, bad in ipairs({ "1x", "pg_x", "a-b", "a\"b", string.rep("a", 64) }) do
          s, err = require("weir.store").open(dir, url .. "?schema=" .. bad)
          assert.is_nil(s)
          assert.matches("schema must be a name", tostring(err), 1, true)
        end
      end)

      it("never puts the password in its errors", function()
        local bad = PG_URL:gsub("^(postgres%a*://[^:]*:)[^@]*@", "%1not-the-pw-%%2Fs3cr3t@")
        local s, err = require("weir.store").open(dir, bad)
        assert.is_nil(s)
        err = tostring(err)
        assert.matches("postgres metadata:", err, 1, true)
        assert.is_nil(err:find("s3cr3t", 1, true))
        assert.is_nil(err:find("not-the-pw", 1, true))
        s, err = require("weir.store").open(dir, with_db(PG_URL, "x") .. "?pw=s3cr3t")
        assert.is_nil(s)
        assert.matches("unsupported parameter", tostring(err))
        assert.is_nil(tostring(err):find("s3cr3t", 1, true))
        s, err = require("weir.store").open(dir, "mysql://u:s3cr3t@h/db")
        assert.is_nil(s)
        assert.is_nil(tostring(err):find("s3cr3t", 1, true))
      end)
    end

    it("carries `weir run`, `weir show --json` and `weir resume` through the CLI", function()
      local env = { WEIR_METADATA_URL = url }
      H.write(dir .. "/p.lua", [[
        return pipeline { name = "resumable", tasks = {
          first = task { run = function(ctx) ctx.log("first here") return "done" end },
          second = task { after = { "first" }, run = function(ctx)
            local t0 = os.time() while os.time() - t0 < 3 do end
            return ctx.inputs.first .. "+second" end },
        } }
      ]])
      local function show(id)
        local code, out, err = H.weir(dir, "show " .. id .. " --json", env)
        assert.equal(0, code, err)
        return json.decode(out)
      end
      local function last_run()
        local code, out, err = H.weir(dir, "runs --json --limit 1", env)
        assert.equal(0, code, err)
        local list = json.decode(out)
        return list[1] and list[1].run_id
      end
      -- the store exists before concurrent openers come (weir.store.sqlite's
      -- first migration is not safe against them)
      open():close()
      local pid = H.spawn(dir, "run p.lua", dir .. "/run.log", env)
      local run_id = H.wait_for(function()
        local id = last_run()
        local s = id and H.task(show(id), "second")
        return s and s.state == "running" and id
      end, 15)
      assert.truthy(run_id, H.read(dir .. "/run.log"))
      -- a live supervisor keeps its run
      local code, _, err = H.weir(dir, "resume " .. run_id, env)
      assert.equal(3, code, err)
      assert.matches("is still running", err, 1, true)
      local workers = H.output("pgrep -P " .. pid .. " -f __worker")
      os.execute("kill -9 " .. pid)
      assert.truthy(H.wait_dead(pid))
      for w in workers:gmatch("%d+") do assert.truthy(H.wait_dead(w, 5)) end
      -- two resumes at once: one takes the run over
      local codes = { dir .. "/c1", dir .. "/c2" }
      for i = 1, 2 do
        H.spawn(dir, "resume " .. run_id, dir .. "/resume" .. i .. ".log", env, codes[i])
      end
      for i = 1, 2 do
        assert.truthy(H.wait_for(function() return (H.read(codes[i]) or ""):find("\n") end, 30))
      end
      local c1, c2 = tonumber(H.read(codes[1])), tonumber(H.read(codes[2]))
      local logs = H.read(dir .. "/resume1.log") .. H.read(dir .. "/resume2.log")
      assert.truthy(c1 == 0 or c2 == 0, logs)
      for i, c in ipairs({ c1, c2 }) do
        if c ~= 0 then
          assert.equal(3, c, logs)
          assert.matches("is still running", H.read(dir .. "/resume" .. i .. ".log"), 1, true)
        end
      end
      local run = show(run_id)
      assert.equal("success", run.status)
      assert.equal("resumable", run.pipeline)
      assert.same({}, run.params)
      local first, second = H.task(run, "first"), H.task(run, "second")
      assert.equal(1, first.attempts)
      assert.equal("done", first.output)
      assert.equal("first here", first.attempt_list[1].log)
      assert.equal("done+second", second.output)
      assert.equal(2, #second.attempt_list, logs)
      assert.equal("lost", second.attempt_list[1].status)
      assert.equal("success", second.attempt_list[2].status)
      assert.equal("string", type(second.attempt_list[2].started_at))
      assert.truthy(H.ms(second.attempt_list[2].finished_at)
                    >= H.ms(second.attempt_list[2].started_at))
      code, _, err = H.weir(dir, "resume " .. run_id, env)
      assert.equal(0, code)
      assert.matches("already succeeded", err, 1, true)
      local _, out = H.weir(dir, "runs --json", env)
      local list = json.decode(out)
      assert.equal(1, #list)
      assert.same({ run_id, "resumable", "success" }, { list[1].run_id, list[1].pipeline,
                                                         list[1].status })
      -- the store is where the URL says, not in WEIR_HOME
      assert.is_nil(H.read(dir .. "/.weir/weir.db"))
      shown[B.name] = shape(run)
    end)
  end)
end

describe("the two metadata stores", function()
  it("give `weir show --json` the same shape", function()
    if not (shown.sqlite and shown.postgres) then
      pending("needs both backends' CLI specs to have passed (WEIR_TEST_PG_URL set)")
      return
    end
    assert.same(shown.sqlite, shown.postgres)
  end)

  it("keep check results in the same shape", function()
    if not (checked.sqlite and checked.postgres) then
      pending("needs both backends' specs to have passed (WEIR_TEST_PG_URL set)")
      return
    end
    assert.same(checked.sqlite, checked.postgres)
  end)
end)
