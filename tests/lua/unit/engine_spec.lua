-- weir.engine, driven by a fake executor and clock over an in-memory store
-- (tests/lua/fakes.lua): ordering, outputs, retries and their delays,
-- deadlines, worker deaths, prefetch, cancellation, selection and resume,
-- each in a few milliseconds. The real executor and stores are covered by
-- tests/e2e and tests/integration.
local engine = require("weir.engine")
local fakes = require("fakes")

local RUN = "20261207T000000-00000000"

local pipeline = fakes.pipeline

-- Run P to its end. behave(job) as in fakes.exec; o: workers, resume,
-- resume_tasks, only, from, store, signal = { sig, at }, redact, clock.
local function run(P, behave, o)
  o = o or {}
  local clock = o.clock or fakes.clock()
  local store = o.store or fakes.store()
  local exec = fakes.exec(o.workers or 2, clock, behave, store)
  if o.signal then exec:signal(o.signal[1], o.signal[2]) end
  if not o.resume then
    store:begin()
    store:create_run({ id = RUN, status = "queued" })
    store:commit()
  end
  local e = engine.new({ P = P, store = store, exec = exec, run_id = RUN, params = {},
                         roots = { "/tmp" }, clock = clock, resume = o.resume,
                         resume_tasks = o.resume_tasks, only = o.only, from = o.from,
                         redact = o.redact, prefetch = o.prefetch, lineage = o.lineage })
  e:start()
  engine.drive(e, exec)
  local status = e:finish()
  return status, { store = store, exec = exec, clock = clock, engine = e }
end

local function ok(output) return { ms = 10, result = { status = "success", output = output } } end
local function err(msg, extra)
  local r = { status = "failed", error = msg }
  for k, v in pairs(extra or {}) do r[k] = v end
  return { ms = 10, result = r }
end

local function order_of(exec)
  local out = {}
  for _, j in ipairs(exec.sent) do out[#out + 1] = j.task .. "#" .. j.attempt end
  return out
end

describe("weir.engine", function()
  it("runs tasks after their dependencies and hands outputs downstream", function()
    local P = pipeline({ a = {}, b = { after = { "a" } }, c = { after = { "a", "b" } } })
    local status, r = run(P, function(job)
      if job.task == "a" then return ok('"A"') end
      if job.task == "b" then return ok('{"n":1}') end
      assert.same({ a = '"A"', b = '{"n":1}' }, job.inputs)
      return ok("3")
    end)
    assert.equal("success", status)
    assert.same({ "a#1", "b#1", "c#1" }, order_of(r.exec))
    for _, name in ipairs({ "a", "b", "c" }) do
      assert.equal("success", r.store:task(RUN, name).state)
    end
    assert.equal("3", r.store:task(RUN, "c").output)
    assert.equal("success", r.store:run(RUN).status)
  end)

  it("retries a failed attempt after retry_delay * backoff^(n-1), with jitter", function()
    local P = pipeline({ a = { retries = 3, retry_delay = 2, retry_backoff = 3 } })
    local tries = 0
    local status, r = run(P, function()
      tries = tries + 1
      if tries < 3 then return err("boom " .. tries) end
      return ok("1")
    end)
    assert.equal("success", status)
    local at = r.store:task_attempts(RUN, "a")
    assert.equal(3, #at)
    assert.same({ "failed", "failed", "success" }, { at[1].status, at[2].status, at[3].status })
    assert.equal("boom 1", at[1].error)
    -- the fake clock: attempt n+1 starts delay after attempt n ended
    local gap1 = at[2].started_at - at[1].finished_at
    local gap2 = at[3].started_at - at[2].finished_at
    assert.is_true(gap1 >= 2000 * 0.8 and gap1 <= 2000 * 1.2 + 1, "gap1 " .. gap1)
    assert.is_true(gap2 >= 6000 * 0.8 and gap2 <= 6000 * 1.2 + 1, "gap2 " .. gap2)
    assert.equal(3, r.store:task(RUN, "a").attempts)
  end)

  it("fails a task whose retries are spent and everything downstream of it", function()
    local P = pipeline({ a = { retries = 1 }, b = { after = { "a" } }, c = { after = { "b" } },
                         d = {} })
    local status, r = run(P, function(job)
      if job.task == "a" then return err("no") end
      return ok("1")
    end)
    assert.equal("failed", status)
    assert.equal(2, #r.store:task_attempts(RUN, "a"))
    assert.equal("failed", r.store:task(RUN, "a").state)
    assert.equal("upstream_failed", r.store:task(RUN, "b").state)
    assert.equal("upstream_failed", r.store:task(RUN, "c").state)
    assert.equal("upstream task b failed", r.store:task(RUN, "c").error)
    assert.equal("success", r.store:task(RUN, "d").state)
    assert.equal(0, #r.store:task_attempts(RUN, "b"))
  end)

  it("stores each attempt's lineage, secrets masked, and tells the exporter", function()
    local P = pipeline({ a = { retries = 1, retry_delay = 0 } })
    local tries = 0
    local heard = {}
    local exporter = {
      started = function(_, _, t) heard[#heard + 1] = "start " .. t.name .. " " .. t.attempt end,
      finished = function(_, _, t, status, _, datasets)
        heard[#heard + 1] = status .. " " .. t.name .. " " .. t.attempt .. " "
                            .. (datasets and #datasets or 0)
      end,
      tick = function() end,
    }
    local status, x = run(P, function()
      tries = tries + 1
      local lin = { { dataset = "postgres://s3cret:5432/db/public.t", role = "output", rows = 2 },
                    { dataset = "file:in.csv", role = "input", rows = 2 } }
      if tries == 1 then return err("boom", { lineage = lin }) end
      return { ms = 10, result = { status = "success", output = "1", lineage = lin } }
    end, { lineage = exporter,
           redact = function(t) return type(t) == "string" and t:gsub("s3cret", "***") or t end })
    assert.equal("success", status)
    local rows = x.store.lineage
    assert.equal(4, #rows)
    assert.same({ "failed", 1, "postgres://***:5432/db/public.t", "output", 2, "p" },
                { rows[1].status, rows[1].attempt, rows[1].dataset, rows[1].role, rows[1].rows,
                  rows[1].pipeline })
    assert.same({ "success", 2, "file:in.csv", "input" },
                { rows[4].status, rows[4].attempt, rows[4].dataset, rows[4].role })
    assert.same({ "start a 1", "failed a 1 2", "start a 2", "success a 2 2" }, heard)
  end)

  it("does not retry a result that says retry = false", function()
    local P = pipeline({ a = { retries = 5 } })
    local status, r = run(P, function() return err("bad config", { retry = false }) end)
    assert.equal("failed", status)
    assert.equal(1, #r.store:task_attempts(RUN, "a"))
  end)

  it("names the memory limit when an attempt ran out of memory", function()
    local P = pipeline({ a = { memory = 8 * 1024 * 1024 } })
    local _, r = run(P, function() return err("not enough memory", { kind = "memory" }) end)
    assert.equal("memory limit of 8 MB exceeded", r.store:task(RUN, "a").error)
  end)

  it("kills the worker at the deadline and records a timeout, then retries", function()
    local P = pipeline({ a = { timeout = 0.5, retries = 1, retry_delay = 0.001 } })
    local n = 0
    local status, r = run(P, function()
      n = n + 1
      if n == 1 then return { hang = true } end
      return ok("1")
    end)
    assert.equal("success", status)
    assert.equal(1, #r.exec.kills)
    local at = r.store:task_attempts(RUN, "a")
    assert.equal("failed", at[1].status)
    assert.equal("timed out after 500ms (worker killed)", at[1].error)
    -- killed at the deadline on the fake clock, not a millisecond later
    assert.equal(at[1].started_at - 1.8e12 + 500, r.exec.kills[1].at)
    assert.equal("success", at[2].status)
  end)

  it("fails the head of a dead worker and puts the jobs queued behind it back", function()
    -- one worker, a backlog: jobs queue behind the first
    local tasks = {}
    for i = 1, 4 do tasks["t" .. i] = {} end
    local P = pipeline(tasks)
    local died = false
    local status, r = run(P, function(job)
      if job.task == "t1" and not died then died = true; return { ms = 1, exit = -9 } end
      return ok("1")
    end, { workers = 1 })
    assert.equal("failed", status)
    local a1 = r.store:task_attempts(RUN, "t1")
    assert.equal("worker killed by SIGKILL during the attempt", a1[1].error)
    -- the others ran once each: the requeue did not use up an attempt
    for i = 2, 4 do
      local at = r.store:task_attempts(RUN, "t" .. i)
      assert.equal(1, #at, "t" .. i)
      assert.equal("success", at[1].status)
    end
  end)

  it("does not retry an attempt whose worker its system-call filter killed", function()
    local P = pipeline({ a = { retries = 3 } })
    local status, r = run(P, function() return { ms = 1, exit = -31 } end, { workers = 1 })
    assert.equal("failed", status)
    local at = r.store:task_attempts(RUN, "a")
    assert.equal(1, #at)
    assert.equal("worker killed by SIGSYS: it made a system call outside the worker's"
                 .. " allow-list (docs/security.md) during the attempt", at[1].error)
  end)

  it("prefetches behind busy workers only when there is a backlog", function()
    local tasks = {}
    for i = 1, 40 do tasks["t" .. i] = {} end
    local _, r = run(pipeline(tasks), function() return { ms = 1, result = { status = "success" } } end,
                     { workers = 2 })
    assert.is_true(r.exec.max_queue > 1, "no prefetch with 40 ready tasks")
    assert.is_true(r.exec.max_queue <= 8, "more than prefetch = 8 queued")
    local _, r2 = run(pipeline({ a = {}, b = {} }), function() return ok("1") end,
                      { workers = 2 })
    assert.equal(1, r2.exec.max_queue)
  end)

  it("cancels on a signal: running and queued tasks end cancelled", function()
    local P = pipeline({ a = {}, b = { after = { "a" } } })
    local status, r = run(P, function() return { hang = true } end, { signal = { 15, 1500 } })
    assert.equal("cancelled", status)
    assert.equal(15, r.engine.cancelled_by)
    assert.equal("cancelled", r.store:task(RUN, "a").state)
    assert.equal("cancelled", r.store:task(RUN, "b").state)
    assert.equal("run cancelled by signal 15", r.store:task(RUN, "b").error)
    assert.equal("cancelled", r.store:task_attempts(RUN, "a")[1].status)
    assert.equal("cancelled", r.store:run(RUN).status)
  end)

  it("runs only the selected task with --only, and its downstream with --from", function()
    local P = pipeline({ a = {}, b = { after = { "a" } }, c = { after = { "b" } } })
    local _, r = run(P, function() return ok("1") end, { only = "b" })
    assert.same({ "b#1" }, order_of(r.exec))
    assert.equal("skipped", r.store:task(RUN, "a").state)
    assert.equal("skipped", r.store:task(RUN, "c").state)
    local _, r2 = run(P, function() return ok("1") end, { from = "b" })
    assert.same({ "b#1", "c#1" }, order_of(r2.exec))
  end)

  it("resumes: keeps what succeeded, re-runs the rest with a fresh retry budget", function()
    local P = pipeline({ a = {}, b = { after = { "a" }, retries = 1 }, c = { after = { "b" } } })
    local store = fakes.store()
    local status = run(P, function(job)
      if job.task == "b" then return err("down") end
      return ok('"a-out"')
    end, { store = store })
    assert.equal("failed", status)
    assert.equal(2, #store:task_attempts(RUN, "b"))
    local status2, r = run(P, function(job)
      if job.task == "c" then assert.same({ b = "2" }, job.inputs) end
      if job.task == "b" then assert.same({ a = '"a-out"' }, job.inputs) end
      return ok("2")
    end, { store = store, resume = true, resume_tasks = store:tasks(RUN) })
    assert.equal("success", status2)
    assert.same({ "b#3", "c#1" }, order_of(r.exec))
    assert.equal(1, #store:task_attempts(RUN, "a"))
    assert.equal("success", store:task(RUN, "c").state)
  end)

  it("masks secrets in what it stores and hands the output downstream as it was", function()
    local P = pipeline({ a = {}, b = { after = { "a" } } })
    local redact = function(s)
      if type(s) ~= "string" then return s end
      return (s:gsub("hunter2", "***"))
    end
    local _, r = run(P, function(job)
      if job.task == "a" then
        return { ms = 1, result = { status = "success", output = '"hunter2"', log = "pw hunter2" } }
      end
      assert.same({ a = '"hunter2"' }, job.inputs)
      return err("still hunter2")
    end, { redact = redact })
    assert.equal('"***"', r.store:task(RUN, "a").output)
    assert.equal("pw ***", r.store:task_attempts(RUN, "a")[1].log)
    assert.equal("still ***", r.store:task(RUN, "b").error)
  end)

  it("commits every step before its jobs are sent", function()
    -- fakes.exec asserts it at each send; here: one commit per step at most
    local tasks = {}
    for i = 1, 20 do tasks["t" .. i] = { after = i > 1 and { "t" .. (i - 1) } or nil } end
    local status, r = run(pipeline(tasks), function() return ok("1") end, { workers = 1 })
    assert.equal("success", status)
    assert.equal(20, #r.exec.sent)
    assert.is_true(r.store.commits >= 20)
  end)
end)

describe("engine.dag_order", function()
  it("lists tasks by layers of the DAG, each layer by name", function()
    local T = {}
    local function t(name, deps) T[name] = { deps = deps, downs = {} } end
    t("z_extract", {}); t("a_load", { "m_transform" }); t("m_transform", { "z_extract" })
    t("b_other", {}); t("c_report", { "a_load", "b_other" })
    local names = {}
    for name in pairs(T) do names[#names + 1] = name end
    table.sort(names)
    for _, n in ipairs(names) do
      for _, d in ipairs(T[n].deps) do table.insert(T[d].downs, n) end
    end
    assert.same({ "b_other", "z_extract", "m_transform", "a_load", "c_report" },
                engine.dag_order(T, names))
  end)
end)
