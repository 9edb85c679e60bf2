-- weir.runner: many runs over one pool, driven by the fakes
-- (tests/lua/fakes.lua): runs of several pipelines share the workers and
-- take turns, a cancelled run stops its workers without charging the
-- other runs' attempts, a worker's death fails only its own attempt.
local runner = require("weir.runner")
local fakes = require("fakes")

local function ok() return { ms = 10, result = { status = "success", output = "1" } } end

-- A runner over n fake workers; behave as in fakes.exec.
local function setup(n, behave)
  local clock = fakes.clock()
  local store = fakes.store()
  local exec = fakes.exec(n, clock, behave, store)
  local finished = {}
  local r = runner.new({ exec = exec, store = store, clock = clock,
                         on_finish = function(e, status) finished[e.run_id] = status end })
  return { r = r, exec = exec, store = store, clock = clock, finished = finished }
end

-- Start a run of P with id.
local function start(x, P, id)
  x.store:begin()
  x.store:create_run({ id = id, status = "queued" })
  x.store:commit()
  return x.r:add({ P = P, run_id = id, params = {}, roots = { "/tmp" } })
end

-- Turn the runner until no run is active (at most limit polls); before(i)
-- runs before poll i.
local function drive(x, before, limit)
  local evs = {}
  for i = 1, limit or 10000 do
    for _, j in ipairs(x.r:step(evs)) do assert(x.exec:sendv(j[1], j[2], j[3], j[4])) end
    if x.r.active == 0 then return i end
    if before then before(i) end
    evs = x.exec:poll(x.r:wait_ms())
  end
  error("the runs did not end")
end

local function tasks(n, extra)
  local t = {}
  for i = 1, n do t["t" .. i] = extra or {} end
  return t
end

describe("weir.runner", function()
  it("runs several pipelines' runs to their end over one pool", function()
    local x = setup(2, ok)
    start(x, fakes.pipeline(tasks(5), "a"), "ra")
    start(x, fakes.pipeline(tasks(3), "b"), "rb")
    drive(x)
    assert.same({ ra = "success", rb = "success" }, x.finished)
    assert.equal(8, #x.exec.sent)
    assert.equal("success", x.store:run("ra").status)
  end)

  it("lets pipelines take turns, however many runs one of them has", function()
    local x = setup(1, ok)
    for i = 1, 3 do start(x, fakes.pipeline(tasks(4), "busy"), "busy" .. i) end
    start(x, fakes.pipeline(tasks(4), "quiet"), "quiet")
    drive(x)
    local seq = {}
    for i = 1, 8 do seq[i] = x.exec.sent[i].base.pipeline end
    -- one worker: the quiet pipeline gets every other job until it is done
    assert.same({ "busy", "quiet", "busy", "quiet", "busy", "quiet", "busy", "quiet" }, seq)
    -- and within the busy pipeline, its runs take turns
    local runs = {}
    for i = 1, 6, 2 do runs[#runs + 1] = x.exec.sent[i].base.run_id end
    assert.same({ "busy1", "busy2", "busy3" }, runs)
  end)

  it("cancels one run: its workers stop, the other runs' attempts are not charged", function()
    local x = setup(1, function(job)
      if job.base.run_id == "slow" then return { hang = true } end
      return ok()
    end)
    start(x, fakes.pipeline({ h = {} }, "s"), "slow")
    start(x, fakes.pipeline(tasks(6), "f"), "fast")
    drive(x, function(i)
      if i == 3 then assert.is_true(x.r:cancel("slow", "cancelled by alice")) end
    end)
    assert.equal("cancelled", x.finished.slow)
    assert.equal("success", x.finished.fast)
    assert.equal(1, #x.exec.kills)
    assert.equal("cancelled by alice", x.store:task("slow", "h").error)
    for i = 1, 6 do
      -- requeued attempts are given back: each task is charged once
      assert.equal(1, x.store:task("fast", "t" .. i).attempts)
    end
  end)

  it("fails only the attempt whose worker died; the queued ones of other runs go back", function()
    local x = setup(1, function(job)
      if job.base.run_id == "dies" then return { ms = 10, exit = 1 } end
      return ok()
    end)
    start(x, fakes.pipeline({ d = {} }, "d"), "dies")
    start(x, fakes.pipeline(tasks(4), "f"), "fine")
    drive(x)
    assert.equal("failed", x.finished.dies)
    assert.equal("success", x.finished.fine)
    assert.matches("worker exited with code 1", x.store:task("dies", "d").error)
  end)

  it("applies each run's deadlines and retries on the shared pool", function()
    local x = setup(2, function(job)
      if job.base.run_id == "late" and job.attempt == 1 then return { hang = true } end
      return ok()
    end)
    start(x, fakes.pipeline({ t = { timeout = 1, retries = 1, retry_delay = 0.1 } }, "l"), "late")
    start(x, fakes.pipeline(tasks(3), "o"), "other")
    drive(x)
    assert.equal("success", x.finished.late)
    assert.equal(2, x.store:task("late", "t").attempts)
    assert.equal("success", x.finished.other)
  end)
end)
