-- Watching long work: log lines and rows reach weir run while the task
-- still runs (the task only ends once the test has seen them, so nothing
-- here depends on timing), and a retry says when and which attempt.
local H = require("helpers")
local json = require("weir.json")

describe("weir run while a task runs", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  -- the task streams rows until the test writes go.csv (checked every
  -- 1000 rows), readable by the worker's user
  local PIPELINE = [[
return pipeline {
  name = "long",
  tasks = {
    slow = task { timeout = "5m", run = function(ctx)
      ctx.log("waiting for go.csv")
      local i = 0
      return ctx.rows(function()
        i = i + 1
        if i % 1000 == 0 and pcall(ctx.csv, "go.csv") then return nil end
        return { id = i }
      end):to_jsonl("out.jsonl")
    end },
  },
}
]]

  local function go(d)
    H.write(d .. "/go.csv", "x\n1\n")
    assert(H.succeeds("chmod 644 " .. H.q(d .. "/go.csv")))
  end

  local function events(log)
    local out = {}
    for line in (H.read(log) or ""):gmatch("[^\n]+") do
      local ok, e = pcall(json.decode, line)
      if ok and type(e) == "table" then out[#out + 1] = e end
    end
    return out
  end

  it("streams ctx.log lines and progress events with --log-format json", function()
    H.write(dir .. "/p.lua", PIPELINE)
    local log, codefile = dir .. "/run.log", dir .. "/code"
    H.spawn(dir, "run p.lua --log-format json", log, nil, codefile)
    local function seen(kind)
      for _, e in ipairs(events(log)) do if e.event == kind then return e end end
    end
    local line = H.wait_for(function() return seen("log") end, 60)
    assert.truthy(line, "no log event while the task ran: " .. (H.read(log) or ""))
    assert.same({ "slow", "waiting for go.csv", 1 }, { line.task, line.line, line.attempt })
    local p = H.wait_for(function() return seen("progress") end, 60)
    assert.truthy(p, "no progress event while the task ran: " .. (H.read(log) or ""))
    assert.equal("slow", p.task)
    assert.is_true(p.rows_in > 0)
    assert.is_true(p.rows_per_s >= 0)
    go(dir)
    assert.truthy(H.wait_for(function() return H.read(codefile) end, 120), H.read(log))
    assert.equal("0", H.read(codefile):match("%d+"), H.read(log))
    local done
    for _, e in ipairs(events(log)) do
      if e.event == "task" and e.state == "success" then done = e end
    end
    assert.truthy(done)
    assert.is_true(done.rows_out >= p.rows_out)
    assert.equal(done.rows_in, done.rows_out) -- nothing filtered, nothing rejected
  end)

  it("prints log lines as they come off a terminal", function()
    H.write(dir .. "/p.lua", PIPELINE)
    local log, codefile = dir .. "/run.log", dir .. "/code"
    H.spawn(dir, "run p.lua", log, nil, codefile)
    assert.truthy(H.wait_for(function()
      return (H.read(log) or ""):find("slow%s+| waiting for go.csv")
    end, 60), H.read(log))
    go(dir)
    assert.truthy(H.wait_for(function() return H.read(codefile) end, 120), H.read(log))
    assert.matches("success in .+ read  %d+ written", H.read(log))
  end)

  it("says when a task is retried and which attempt comes", function()
    local code, _, err = H.run_pipeline(dir, [[
return pipeline { name = "r", tasks = {
  flaky = task { retries = 2, retry_delay = "10ms", run = function(ctx)
    if ctx.attempt < 2 then error("not yet", 0) end
    return ctx.attempt
  end } } }]])
    assert.equal(0, code, err)
    assert.matches("flaky%s+up_for_retry: not yet; retrying in %d+%.%ds %(attempt 2/3%)", err)
    local _, _, jerr = H.weir(dir, "run p.lua --log-format json")
    local retry
    for line in jerr:gmatch("[^\n]+") do
      local e = json.decode(line)
      if e.state == "up_for_retry" then retry = e end
      -- an event never carries an earlier attempt's error
      if e.state == "running" or e.state == "queued" or e.state == "success" then
        assert.is_nil(e.error, line)
      end
    end
    assert.same({ "not yet", 2, 3 }, { retry.error, retry.next_attempt, retry.max_attempts })
    assert.is_number(retry.retry_in)
  end)
end)
