-- Specs for weir.executor, the Lua face of the C executor: a pool of real
-- `weir __worker` processes (this very binary), jobs queued with send and
-- sendv, and the events poll returns: results decoded where they were
-- read, a worker's exit after kill (and the fresh worker in its slot), a
-- signal to the supervisor. No timing is asserted: every wait is a poll
-- loop with a generous deadline.
local H = require("helpers")
local executor = require("weir.executor")
local ser = require("weir._ser")
local encode_ud = require("weir._native").ser_encode_ud

local CAP = 64 * 1024 * 1024

local await = H.await_event

local function result_of(slot)
  return function(e) return e.kind == "result" and e.slot == slot end
end

describe("weir.executor", function()
  local dir, ex

  before_each(function() dir = H.tmpdir() end)
  after_each(function()
    if ex then ex:close() end
    ex = nil
    H.cleanup(dir)
  end)

  it("runs a job in a worker and returns its result decoded", function()
    ex = assert(executor.new({ workers = 1, roots = { dir } }))
    assert.equal(1, ex.n)
    local pid = ex:pid(0)
    assert.is_true(pid > 0)
    assert.is_true(executor.pid_alive(pid))
    assert.is_true(ex:send(0, CAP, ser.encode(H.attempt_job("return { n = 42 }", dir))))
    local e = await(ex, result_of(0))
    assert.truthy(e, "no result")
    assert.equal(pid, e.pid)
    assert.equal("success", e.result.status)
    assert.equal('{"n":42}', e.result.output)
  end)

  it("keeps each worker's jobs in order and apart from the others'", function()
    ex = assert(executor.new({ workers = 2, roots = { dir } }))
    assert.are_not.equal(ex:pid(0), ex:pid(1))
    for i = 1, 3 do
      for slot = 0, 1 do
        local src = ("return %d"):format(slot * 10 + i)
        assert.is_true(ex:send(slot, CAP, ser.encode(H.attempt_job(src, dir))))
      end
    end
    local got = { [0] = {}, [1] = {} }
    await(ex, function(e)
      if e.kind == "result" then
        local list = got[e.slot]
        list[#list + 1] = e.result.output
        assert.equal(ex:pid(e.slot), e.pid)
      end
      return #got[0] == 3 and #got[1] == 3
    end)
    assert.same({ "1", "2", "3" }, got[0])
    assert.same({ "11", "12", "13" }, got[1])
  end)

  it("sends a job in parts, strings and userdata, merged in order", function()
    ex = assert(executor.new({ workers = 1, roots = { dir } }))
    local shared = ser.encode(H.attempt_job("local ctx = ... return ctx.attempt", dir))
    local task, n = encode_ud({ task = "t2" })
    local own = ser.encode({ attempt = 7 })
    assert.is_true(ex:sendv(0, CAP, { shared, task, own }, { nil, n, nil }))
    local e = await(ex, result_of(0))
    assert.equal("7", e.result.output)
  end)

  it("kills a worker on request: its exit event, then a fresh worker in the slot", function()
    ex = assert(executor.new({ workers = 1, roots = { dir } }))
    local old = ex:pid(0)
    -- busy forever: only the kill ends it
    assert.is_true(ex:send(0, CAP, ser.encode(H.attempt_job("while true do end", dir))))
    assert.is_true(ex:kill(0))
    local e, seen = await(ex, function(ev) return ev.kind == "exit" end)
    assert.truthy(e, "no exit event")
    assert.same({ kind = "exit", slot = 0, pid = old, status = -9 },
                { kind = e.kind, slot = e.slot, pid = e.pid, status = e.status })
    for _, ev in ipairs(seen) do assert.are_not.equal("result", ev.kind) end
    assert.truthy(H.wait_dead(old))
    local new = ex:pid(0)
    assert.are_not.equal(old, new)
    assert.is_true(ex:send(0, CAP, ser.encode(H.attempt_job("return 'again'", dir))))
    local r = await(ex, result_of(0))
    assert.equal('"again"', r.result.output)
    assert.equal(new, r.pid)
  end)

  it("reports SIGTERM to the supervisor as a signal event", function()
    ex = assert(executor.new({ workers = 1, roots = { dir } }))
    local me = executor.getpid()
    assert.equal(tostring(me), H.output("echo $PPID"):match("%d+"))
    assert.is_true(H.succeeds("kill -TERM " .. me))
    local e = await(ex, function(ev) return ev.kind == "signal" end)
    assert.truthy(e, "no signal event")
    assert.equal(15, e.status)
  end)

  it("returns no events when nothing happened", function()
    ex = assert(executor.new({ workers = 1, roots = { dir } }))
    assert.same({}, assert(ex:poll(0)))
  end)

  it("refuses a slot it does not have, with an error value", function()
    ex = assert(executor.new({ workers = 1, roots = { dir } }))
    local ok, err = ex:send(3, CAP, "x")
    assert.is_nil(ok)
    assert.is_string(err.code)
    assert.is_string(err.message)
  end)

  it("closes twice safely, and its workers are gone", function()
    ex = assert(executor.new({ workers = 2, roots = { dir } }))
    local pids = { ex:pid(0), ex:pid(1) }
    ex:close()
    ex:close()
    assert.is_nil(ex.h)
    for _, pid in ipairs(pids) do assert.truthy(H.wait_dead(pid)) end
  end)

  it("gives the clocks: wall time in ms, a monotonic clock that never goes back", function()
    assert.is_true(math.abs(executor.now() - os.time() * 1000) < 5000)
    local a = executor.mono()
    local b = executor.mono()
    assert.is_true(b >= a)
  end)

  it("gets a failure record built in C when Lua cannot run the job", function()
    -- a memory cap below what the prepared sandbox already uses: the worker
    -- answers without running Lua (runtime/worker.c: send_failure)
    ex = assert(executor.new({ workers = 1, roots = { dir } }))
    assert(ex:send(0, 1000, "unused"))
    local res = await(ex, result_of(0)).result
    assert.is_table(res)
    assert.equal("failed", res.status)
    assert.equal("memory", res.kind)
    assert.matches("^memory limit of 1000 bytes is below what the sandbox itself needs %(%d+%)$",
                   res.error)
    local n = 0
    for _ in pairs(res) do n = n + 1 end
    assert.equal(3, n)
  end)
end)
