-- Specs for weir._attempt: what one task attempt returns. Run here, in the
-- trusted state, for success, a raised error (blamed on the task's line,
-- with the traceback in the log), a load error, output too big or not
-- JSON-able, logs and their cap, rows counted, and the retry verdict of a
-- hopeless connector error; and in a real worker under a memory cap,
-- where running out of memory is its own kind of failure.
local H = require("helpers")
local attempt = require("weir._attempt")
local executor = require("weir.executor")
local ser = require("weir._ser")

describe("weir._attempt", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  local function run(src, extra)
    return attempt.run(H.attempt_job(src, dir, extra))
  end

  it("returns the output as JSON, the log and the row counts on success", function()
    local r = run([[
      local ctx = ...
      ctx.log("hello %s", "log")
      ctx.log("two")
      local n = ctx.rows({ { a = 1 }, { a = 2 }, { a = 3 } }):count()
      return { n = n, list = { 1, 2 }, name = ctx.task }
    ]])
    assert.equal("success", r.status)
    assert.same({ n = 3, list = { 1, 2 }, name = "t" }, require("weir.json").decode(r.output))
    assert.equal("hello log\ntwo", r.log)
    assert.equal(3, r.rows_in)
    assert.equal(0, r.rows_out)
    assert.is_true(r.finished >= r.started)
    assert.is_nil(r.error)
  end)

  it("returns null for a task that returns nothing", function()
    local r = run("return nil")
    assert.same({ "success", "null" }, { r.status, r.output })
  end)

  it("fails with the error on the task's line, and the traceback in the log", function()
    local r = run("local ctx = ...\nerror('boom')")
    assert.same({ "failed", "error", "task.lua:2: boom" }, { r.status, r.kind, r.error })
    assert.matches("^error: task.lua:2: boom\nstack traceback:", r.log)
    assert.is_nil(r.retry)
    assert.is_nil(r.output)
  end)

  it("blames a bad argument to the library on the task's line", function()
    local r = run("local ctx = ...\n\nctx.path(1)")
    assert.same({ "failed", "error", "task.lua:3: ctx.path: bad path (string expected)" },
                { r.status, r.kind, r.error })
  end)

  it("fails with kind load when the task's text does not compile", function()
    local r = run("this is not Lua")
    assert.same({ "failed", "load" }, { r.status, r.kind })
    assert.matches("^task.lua:1: ", r.error)
  end)

  it("fails with kind output when the output is too big, not JSON-able or cyclic", function()
    local r = run("return string.rep('x', 2000)", { output_max = 1000 })
    assert.same({ "failed", "output", "task output: json: output exceeds 1000 bytes" },
                { r.status, r.kind, r.error })
    r = run("return { f = print }")
    assert.same({ "failed", "output", "task output: json: cannot encode value of type function at output.f" },
                { r.status, r.kind, r.error })
    r = run("local t = {} t.t = t return t")
    assert.same({ "failed", "output", "task output: json: cycle at output.t" },
                { r.status, r.kind, r.error })
    -- just under the cap passes
    r = run("return string.rep('x', 998)", { output_max = 1000 })
    assert.equal("success", r.status)
  end)

  it("keeps the log under its cap and says it cut it", function()
    local r = run("local ctx = ... for i = 1, 100 do ctx.log(string.rep('y', 99)) end",
                  { log_max = 500 })
    assert.equal("success", r.status)
    local lines = {}
    for l in r.log:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(6, #lines)
    assert.equal(string.rep("y", 99), lines[5])
    assert.equal("[log truncated at 500 bytes]", lines[6])
  end)

  it("says not to retry an error a connector marked hopeless (transient = false)", function()
    -- a connector's error value, raised through ctx as a connector raises it
    local errors = require("weir.errors")
    local ctxm = require("weir._ctx")
    local real_new = ctxm.new
    finally(function() ctxm.new = real_new end)
    ctxm.new = function(...)
      local ctx, close, side = real_new(...)
      ctx.fail_with = function(transient)
        local e = errors.new("sql", "hopeless error")
        e.transient = transient
        error(e, 0)
      end
      return ctx, close, side
    end
    local r = run("local ctx = ... ctx.fail_with(false)")
    assert.same({ "failed", "error", "hopeless error", false }, { r.status, r.kind, r.error, r.retry })
    r = run("local ctx = ... ctx.fail_with(true)")
    assert.is_nil(r.retry)
    -- a plain error from the task keeps its retries
    r = run("error('retry me', 0)")
    assert.is_nil(r.retry)
  end)

  it("fails with kind memory when the task runs out of its cap in a worker", function()
    local ex = assert(executor.new({ workers = 1, roots = { dir } }))
    finally(function() ex:close() end)
    -- one allocation past the cap: it fails, and nothing of it stays held
    local src = "local ctx = ... ctx.log('before') return #string.rep('m', 64 * 1024 * 1024)"
    assert.is_true(ex:send(0, 32 * 1024 * 1024, ser.encode(H.attempt_job(src, dir))))
    local e, seen = H.await_event(ex, function(ev)
      return ev.kind ~= "signal" and ev.kind ~= "progress"
    end, 60)
    assert.truthy(e, "no event")
    assert.equal("result", e.kind) -- the worker survived
    -- ctx.log's line came first, as a progress frame
    assert.equal("progress", seen[1].kind)
    assert.same({ "before" }, seen[1].result.log)
    local res = e.result
    assert.same({ "failed", "memory" }, { res.status, res.kind })
    assert.equal("not enough memory", res.error)
    assert.equal("before", res.log:match("^[^\n]*"))
    assert.is_true(res.mem_peak > 0)
  end)

  it("reports rows while the task streams them, before its result", function()
    local ex = assert(executor.new({ workers = 1, roots = { dir } }))
    finally(function() ex:close() end)
    -- progress_every = 0: a report at every batch (1000 ms by default)
    local src = "local ctx = ... local i = 0 "
      .. "return ctx.rows(function() i = i + 1 if i <= 5000 then return { id = i } end end)"
      .. ":to_jsonl('rows.jsonl')"
    assert.is_true(ex:send(0, 0, ser.encode(H.attempt_job(src, dir, { progress_every = 0 }))))
    local e, seen = H.await_event(ex, function(ev) return ev.kind == "result" end, 60)
    assert.truthy(e, "no result")
    assert.same({ "success", 5000, 5000 }, { e.result.status, e.result.rows_in, e.result.rows_out })
    local reports = {}
    for _, ev in ipairs(seen) do
      if ev.kind == "progress" then reports[#reports + 1] = ev.result end
    end
    assert.is_true(#reports >= 4, "progress reports: " .. #reports)
    for i = 2, #reports do
      assert.is_true(reports[i].rows_in >= reports[i - 1].rows_in)
      assert.is_true(reports[i].rows_out >= reports[i - 1].rows_out)
    end
    assert.is_true(reports[#reports].rows_out > 0)
  end)
end)
