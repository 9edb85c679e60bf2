-- fakes.lua - a clock, an executor and a metadata store in memory, for
-- unit specs of weir.engine: no processes, no database, and time moves
-- only when the engine waits. The fake executor checks the engine's
-- promise that a job is on no socket before the attempt it carries is
-- committed.
local ffi = require("ffi")
local native = require("weir._native")
local M = {}

--- A clock: mono() and now() in ms; the executor advances it.
function M.clock(t0)
  local c = { t = t0 or 1000 }
  function c.mono() return c.t end
  function c.now() return 1.8e12 + c.t end
  return c
end

---------------------------------------------------------------------------
-- The store
---------------------------------------------------------------------------

local Store = {}
Store.__index = Store

--- An in-memory store with the interface of weir.store (the calls the
-- engine and the run object make). SQL NULL (weir.db's NULL) is nil.
function M.store()
  return setmetatable({ depth = 0, runs_ = {}, task_rows = {}, attempt_rows = {},
                        commits = 0 }, Store)
end

local function key(...) return table.concat({ ... }, "\0") end

local function put(row, fields)
  local null = require("weir.connectors.sqlite").NULL
  for k, v in pairs(fields) do
    if v == null then row[k] = nil else row[k] = v end
  end
end

function Store:begin() self.depth = self.depth + 1 end
function Store:commit()
  assert(self.depth > 0, "commit without begin")
  self.depth = self.depth - 1
  if self.depth == 0 then self.commits = self.commits + 1 end
end
function Store:rollback() self.depth = 0 end
function Store.checkpoint() end
function Store.close() end

function Store:write()
  assert(self.depth > 0, "a store write outside a transaction")
end

function Store:create_run(r)
  self:write()
  self.runs_[r.id] = r
end

function Store:update_run(id, fields)
  self:write()
  self.runs_[id] = self.runs_[id] or { id = id }
  put(self.runs_[id], fields)
end

function Store:run(id) return self.runs_[id] end

function Store:add_tasks(run_id, names)
  self:write()
  for _, n in ipairs(names) do
    local k = key(run_id, n)
    self.task_rows[k] = self.task_rows[k] or { run_id = run_id, task = n, state = "queued",
                                               attempts = 0 }
  end
end

function Store:set_task(run_id, task, fields)
  self:write()
  put(assert(self.task_rows[key(run_id, task)], "no task row " .. task), fields)
end

function Store:start_attempt(run_id, task, n, started_at, task_started_at, worker_pid)
  self:write()
  put(self.task_rows[key(run_id, task)], { state = "running", attempts = n,
                                          started_at = task_started_at })
  self.attempt_rows[key(run_id, task, n)] = { run_id = run_id, task = task, attempt = n,
                                              status = "running", worker_pid = worker_pid,
                                              started_at = started_at }
end

function Store:finish_attempt(run_id, task, n, r)
  self:write()
  put(self.attempt_rows[key(run_id, task, n)], {
    status = r.status, finished_at = r.finished_at, error = r.error, output = r.output,
    log = r.log, mem_peak = r.mem_peak, rows_in = r.rows_in, rows_out = r.rows_out })
end

function Store:task_succeeded(run_id, task, output, finished_at, rows_in, rows_out)
  self:write()
  local row = self.task_rows[key(run_id, task)]
  put(row, { state = "success", output = output, finished_at = finished_at,
             rows_in = rows_in, rows_out = rows_out })
  row.error = nil
end

function Store:add_lineage(run_id, task, n, pipeline, status, at, datasets)
  self:write()
  self.lineage = self.lineage or {}
  for _, d in ipairs(datasets) do
    self.lineage[#self.lineage + 1] = { run_id = run_id, task = task, attempt = n,
                                        pipeline = pipeline, status = status, at = at,
                                        dataset = d.dataset, role = d.role, rows = d.rows }
  end
end

function Store:update_attempt(run_id, task, attempt, fields)
  self:write()
  local row = self.attempt_rows[key(run_id, task, attempt)]
  if row then put(row, fields) end
end

local function sorted(t, less)
  local out = {}
  for _, v in pairs(t) do out[#out + 1] = v end
  table.sort(out, less)
  return out
end

function Store:tasks(run_id)
  local out = {}
  for _, r in ipairs(sorted(self.task_rows, function(a, b) return a.task < b.task end)) do
    if r.run_id == run_id then out[#out + 1] = r end
  end
  return out
end

function Store:attempts(run_id)
  local out = {}
  for _, r in ipairs(sorted(self.attempt_rows, function(a, b)
    if a.task ~= b.task then return a.task < b.task end
    return a.attempt < b.attempt
  end)) do
    if r.run_id == run_id then out[#out + 1] = r end
  end
  return out
end

--- The attempt rows of one task, in order.
function Store:task_attempts(run_id, task)
  local out = {}
  for _, a in ipairs(self:attempts(run_id)) do
    if a.task == task then out[#out + 1] = a end
  end
  return out
end

function Store:task(run_id, task) return self.task_rows[key(run_id, task)] end

---------------------------------------------------------------------------
-- The executor
---------------------------------------------------------------------------

local Exec = {}
Exec.__index = Exec

local function part_bytes(p, size)
  if type(p) == "string" then return p end
  return ffi.string(ffi.cast("const char *", p), size)
end

--- A fake pool of n slots. behave(job) decides what a job does: it returns
-- { ms = duration, result = { status = ..., ... } }, or { ms = duration,
-- exit = status } (the worker dies), or { hang = true } (runs until
-- killed). job = { task, attempt, inputs, slot, base (the run's shared
-- fields) }. store (optional): checked at every send, the job's attempt
-- must be committed as running.
function M.exec(n, clock, behave, store)
  return setmetatable({ n = n, clock = clock, behave = behave, store = store,
                        slots = {}, sent = {}, kills = {}, signals = {}, max_queue = 0,
                        pids = {} }, Exec)
end

function Exec.pid(_, slot) return 1000 + slot end

function Exec:sendv(slot, cap, parts, sizes)
  local base = native.ser_decode(part_bytes(parts[1], sizes[1]), 1)
  local task = native.ser_decode(part_bytes(parts[2], sizes[2]), 1)
  local own = native.ser_decode(part_bytes(parts[3], sizes[3]), 1)
  local job = { task = task.task, attempt = own.attempt, inputs = own.inputs, slot = slot,
                base = base, cap = cap, seed = own.seed }
  local st = self.store
  if st then
    assert(st.depth == 0, "a job was sent inside an open store transaction")
    local a = st.attempt_rows[key(base.run_id, job.task, job.attempt)]
    assert(a and a.status == "running",
           "a job was sent before its attempt was recorded: " .. job.task)
  end
  self.sent[#self.sent + 1] = job
  local q = self.slots[slot] or {}
  self.slots[slot] = q
  local b = self.behave(job)
  local now = self.clock.mono()
  local start = #q > 0 and (q[#q].at or math.huge) or now
  q[#q + 1] = { job = job, at = (not b.hang) and start + (b.ms or 0) or nil, b = b }
  if #q > self.max_queue then self.max_queue = #q end
  return true
end

--- Deliver signal sig (2 or 15) at time at (ms, on the clock).
function Exec:signal(sig, at)
  self.signals[#self.signals + 1] = { sig = sig, at = at }
end

function Exec:kill(slot)
  self.kills[#self.kills + 1] = { slot = slot, at = self.clock.mono() }
  self.slots[slot] = { { killed = true, at = self.clock.mono() } }
  return true
end

-- the earliest pending event: a slot head that finishes, or a signal
function Exec:next_event()
  local best, bt
  for s = 0, self.n - 1 do
    local h = self.slots[s] and self.slots[s][1]
    if h and h.at and (not bt or h.at < bt) then best, bt = { slot = s }, h.at end
  end
  for i, sg in ipairs(self.signals) do
    if not bt or sg.at < bt then best, bt = { signal = i }, sg.at end
  end
  return best, bt
end

function Exec:poll(ms)
  local clock = self.clock
  local ev, at = self:next_event()
  if not ev or at > clock.t + ms then
    clock.t = clock.t + ms
    return {}
  end
  if at > clock.t then clock.t = at end
  if ev.signal then
    local sg = table.remove(self.signals, ev.signal)
    return { { kind = "signal", slot = -1, status = sg.sig } }
  end
  local q = self.slots[ev.slot]
  local h = table.remove(q, 1)
  if h.killed or h.b.exit then
    self.slots[ev.slot] = {}
    return { { kind = "exit", slot = ev.slot, status = h.killed and -9 or h.b.exit } }
  end
  -- the next job starts when this one ends
  local nxt = q[1]
  if nxt and nxt.at then nxt.at = clock.t + (nxt.b.ms or 0) end
  return { { kind = "result", slot = ev.slot, result = h.b.result } }
end

function Exec.close() end

--- A pipeline as weir.pipeline.load makes it, from { name = { after =
-- {...}, retries = n, timeout = s, ... } }; name: the pipeline's (p).
function M.pipeline(tasks, name)
  local P = { name = name or "p", file = "p.lua", base_dir = "/tmp", tasks = {} }
  for tname, t in pairs(tasks) do
    P.tasks[tname] = {
      name = tname, after = t.after or {}, retries = t.retries or 0,
      retry_delay = t.retry_delay or 1, retry_backoff = t.retry_backoff or 2,
      retry_max_delay = t.retry_max_delay or 300, timeout = t.timeout or 3600,
      memory = t.memory or 64 * 1024 * 1024, output_max = 1024 * 1024, log_max = 65536,
      fn = { src = "return 1" },
    }
  end
  return P
end

return M
