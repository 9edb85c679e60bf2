-- weir.engine: the DAG engine of the supervisor.
--
-- Keeps every task's state, dispatches ready tasks to worker slots, applies
-- retries with exponential backoff and jitter, enforces deadlines by
-- killing workers, propagates upstream failures and records every state
-- change in the store. Each loop step is one store transaction that is
-- committed before the step's jobs are sent, so nothing is acted on before
-- it is recorded and a killed supervisor leaves a run `weir resume` can
-- finish.
--
-- States: queued, running, success, failed, up_for_retry, upstream_failed,
-- skipped, cancelled.
local ser = require("weir._ser")
local encode_ud = require("weir._native").ser_encode_ud
local executor = require("weir.executor")
local util = require("weir.util")
local pairs, ipairs, format, min, max, random = pairs, ipairs, string.format,
  math.min, math.max, math.random
local remove = table.remove

local M = {}

local TERMINAL = { success = true, failed = true, upstream_failed = true, skipped = true,
                   cancelled = true }
M.TERMINAL = TERMINAL

local SIGNAMES = { [-9] = "SIGKILL", [-11] = "SIGSEGV", [-6] = "SIGABRT", [-15] = "SIGTERM",
                   [-7] = "SIGBUS", [-8] = "SIGFPE", [-4] = "SIGILL", [-24] = "SIGXCPU" }

local function describe_exit(status)
  if status < 0 then
    return format("worker killed by %s", SIGNAMES[status] or ("signal " .. -status))
  end
  return format("worker exited with code %d", status)
end

--- A new run id: sortable by time, random suffix.
function M.new_run_id()
  local F = require("weir._ffi")
  local buf = F.ffi.new("uint8_t[4]")
  F.C.weir_ffi_random(buf, 4)
  return format("%s-%02x%02x%02x%02x", os.date("!%Y%m%dT%H%M%S"), buf[0], buf[1], buf[2],
                buf[3])
end

--- Run (or resume) a run. o: P (loaded pipeline), store, exec, run_id,
-- params, resume (bool), only / from (task names), prefetch, view
-- (optional callbacks: task(T, event), tick(engine)), roots, connections
-- (normalized weir.yaml connections for the workers), redact (a function
-- that masks secrets in text: errors, logs and outputs pass it before the
-- store sees them).
-- Returns the final run status: "success", "failed" or "cancelled".
local function random_u32()
  local F = require("weir._ffi")
  local buf = F.ffi.new("uint8_t[4]")
  F.C.weir_ffi_random(buf, 4)
  return ((buf[0] * 256 + buf[1]) * 256 + buf[2]) * 256 + buf[3]
end

function M.run(o)
  math.randomseed(random_u32())
  local P, store, exec = o.P, o.store, o.exec
  local run_id = o.run_id
  local now, mono = executor.now, executor.mono
  local view = o.view or {}
  local prefetch = o.prefetch or 8
  local redact = o.redact
  local T, order = {}, {}
  local ready, rq_head, rq_tail = {}, 1, 0
  local retrying = {}
  local counts = { queued = 0, running = 0, success = 0, failed = 0, up_for_retry = 0,
                   upstream_failed = 0, skipped = 0, cancelled = 0 }
  local self = { T = T, order = order, counts = counts, run_id = run_id, P = P,
                 started = mono() }

  for name, spec in pairs(P.tasks) do
    T[name] = { name = name, spec = spec, state = "queued", attempt = 0, base = 0,
                deps = spec.after, downs = {}, waiting = #spec.after }
    order[#order + 1] = name
  end
  table.sort(order)
  for _, name in ipairs(order) do
    for _, d in ipairs(T[name].deps) do
      local dn = T[d].downs
      dn[#dn + 1] = name
    end
  end

  -- the state in memory and the view; the caller records it in the store
  local function move(t, state)
    counts[t.state] = counts[t.state] - 1
    counts[state] = counts[state] + 1
    t.state = state
    if view.task then view.task(t, state) end
  end

  local function set_state(t, state, fields)
    fields = fields or {}
    fields.state = state
    store:set_task(run_id, t.name, fields)
    move(t, state)
  end

  local function push_ready(t)
    rq_tail = rq_tail + 1
    ready[rq_tail] = t
  end

  -- initial states
  local selected
  if o.only or o.from then
    selected = {}
    local root = o.only or o.from
    selected[root] = true
    if o.from then
      local stack = { root }
      while #stack > 0 do
        local n = remove(stack)
        for _, d in ipairs(T[n].downs) do
          if not selected[d] then selected[d] = true; stack[#stack + 1] = d end
        end
      end
    end
  end

  store:begin()
  counts.queued = #order
  if o.resume then
    for _, row in ipairs(o.resume_tasks or {}) do
      local t = T[row.task]
      if t then
        t.attempt, t.base = row.attempts or 0, row.attempts or 0
        if row.state == "success" or row.state == "skipped" then
          counts.queued = counts.queued - 1
          counts[row.state] = counts[row.state] + 1
          t.state, t.output = row.state, row.output
        elseif row.state ~= "queued" then
          set_state(t, "queued", { error = require("weir.db").NULL })
        end
      end
    end
  else
    store:add_tasks(run_id, order)
    for _, name in ipairs(order) do
      if selected and not selected[name] then set_state(T[name], "skipped") end
    end
  end
  store:update_run(run_id, { status = "running", started_at = not o.resume and now() or nil,
                             supervisor_pid = executor.getpid() })
  store:commit()

  -- readiness: a task waits for its dependencies that have not succeeded
  -- (a skipped dependency counts as done: its output is simply absent)
  for _, name in ipairs(order) do
    local t = T[name]
    local w = 0
    for _, d in ipairs(t.deps) do
      local s = T[d].state
      if s ~= "success" and s ~= "skipped" then w = w + 1 end
    end
    t.waiting = w
    if t.state == "queued" and w == 0 then push_ready(t) end
  end

  local slots = {}
  for i = 0, exec.n - 1 do slots[i] = { queue = {}, head_start = 0 } end

  local function fail_downstream(t)
    local stack = { t }
    while #stack > 0 do
      local x = remove(stack)
      for _, dn in ipairs(x.downs) do
        local d = T[dn]
        if not TERMINAL[d.state] then
          set_state(d, "upstream_failed", { error = "upstream task " .. x.name .. " failed",
                                            finished_at = now() })
          stack[#stack + 1] = d
        end
      end
    end
  end

  local function on_success(t)
    for _, dn in ipairs(t.downs) do
      local d = T[dn]
      d.waiting = d.waiting - 1
      if d.waiting == 0 and d.state == "queued" then push_ready(d) end
    end
  end

  local function on_failure(t, msg, final)
    local spec = t.spec
    if not final and t.attempt - t.base <= spec.retries then
      local n = t.attempt - t.base
      local delay = min(spec.retry_delay * spec.retry_backoff ^ (n - 1), spec.retry_max_delay)
      delay = delay * (0.8 + 0.4 * random())
      t.next_try = mono() + delay * 1000
      set_state(t, "up_for_retry", { error = msg, next_try_at = now() + delay * 1000 })
      retrying[#retrying + 1] = t
    else
      set_state(t, "failed", { error = msg, finished_at = now() })
      fail_downstream(t)
    end
  end

  -- a job: the fields every attempt of this run shares (encoded once), the
  -- task's (once per task) and the attempt's own, sent back to back
  local job_base = ser.encode({ kind = "attempt", run_id = run_id, pipeline = P.name,
                                params = o.params, base_dir = P.base_dir, roots = o.roots,
                                connections = o.connections })
  -- a job part as a userdata: thousands of long strings that differ in a
  -- few bytes are costly to intern (weir/ser.h); a string if need be
  local function part(v)
    local ud, n = encode_ud(v)
    if ud then return ud, n end
    local s = assert(ser.encode(v))
    return s, #s
  end
  local function build_job(t)
    local spec = t.spec
    local inputs
    for _, d in ipairs(t.deps) do
      local out = T[d].output
      if out then
        inputs = inputs or {}
        inputs[d] = out
      end
    end
    if not t.job_task then
      t.job_task, t.job_task_n = part({
        fn = spec.fn and spec.fn.blob, src = spec.fn and spec.fn.src,
        chunkname = "=" .. P.file .. ":tasks." .. t.name, task = t.name,
        output_max = spec.output_max, log_max = spec.log_max,
      })
    end
    local own, own_n = part({ attempt = t.attempt, inputs = inputs,
                              seed = random(1, 2147483646) })
    return { job_base, t.job_task, own }, { #job_base, t.job_task_n, own_n }
  end

  -- An idle worker first. Queue a job behind a running one only when there
  -- is a backlog (more ready tasks than workers) and that worker's current
  -- job started less than 5 ms ago: short tasks then stream through without
  -- a round trip each, and a task is never parked behind a long one while
  -- another worker could take it.
  local function pick_slot(tnow)
    local best, best_n
    for i = 0, exec.n - 1 do
      if #slots[i].queue == 0 then return i end
    end
    if rq_tail - rq_head + 1 <= exec.n then return nil end
    for i = 0, exec.n - 1 do
      local n = #slots[i].queue
      if n < prefetch and tnow - slots[i].head_start < 5 then
        if not best or n < best_n then best, best_n = i, n end
      end
    end
    return best
  end

  local cancelled_by
  local function cancel(sig)
    cancelled_by = sig
    for i = 0, exec.n - 1 do
      for _, t in ipairs(slots[i].queue) do
        store:update_attempt(run_id, t.name, t.attempt, { status = "cancelled",
                                                         finished_at = now() })
      end
      slots[i].queue = {}
    end
    for _, name in ipairs(order) do
      local t = T[name]
      if not TERMINAL[t.state] then
        set_state(t, "cancelled", { finished_at = now(),
                                    error = "run cancelled by signal " .. sig })
      end
    end
  end

  local function handle_result(ev)
    local slot = slots[ev.slot]
    local t = remove(slot.queue, 1)
    slot.head_start = mono()
    if not t then return end
    -- the result won the race against a deadline kill: the kill now hits
    -- nothing of this task (see handle_exit)
    t.timed_out = nil
    -- from a worker that ran user code: decoded as plain data by the
    -- executor (the C decoder, never the Lua one, which the JIT compiles)
    local res = ev.result
    if type(res) ~= "table" then res = { status = "failed", error = "unreadable result" } end
    local fin = now()
    res.finished_at = fin
    if res.status ~= "success" and res.kind == "memory" then
      res.error = format("memory limit of %s exceeded", util.human_size(t.spec.memory))
    end
    -- downstream tasks get the output as the task returned it; the store
    -- and the screen get it with the secrets of weir.yaml masked
    local output = res.output
    if redact then
      res.error, res.log = redact(res.error), redact(res.log)
      if res.output then res.output = redact(res.output) end
    end
    store:finish_attempt(run_id, t.name, t.attempt, res)
    t.rows_in, t.rows_out = res.rows_in, res.rows_out
    if res.status == "success" then
      t.output = output
      store:task_succeeded(run_id, t.name, res.output, fin, res.rows_in or 0, res.rows_out or 0)
      move(t, "success")
      on_success(t)
    else
      local msg = res.error or "failed"
      t.error = msg
      on_failure(t, msg, res.retry == false)
    end
  end

  local function handle_exit(ev)
    local slot = slots[ev.slot]
    local q = slot.queue
    slot.queue = {}
    slot.head_start = mono()
    local head = q[1]
    local killed = slot.killed_for
    slot.killed_for = nil
    if killed and head ~= killed then
      -- killed for a deadline whose task's result arrived first: the head
      -- had not been charged for anything, so it goes back too
      head = nil
      for i = #q, 1, -1 do q[i + 1] = q[i] end
      q[1] = false
    end
    if head then
      local msg
      if head.timed_out then
        msg = format("timed out after %s (worker killed)", util.human_duration(head.spec.timeout))
      else
        msg = describe_exit(ev.status) .. " during the attempt"
      end
      head.timed_out = nil
      store:update_attempt(run_id, head.name, head.attempt, { status = "failed",
                                                             finished_at = now(), error = msg })
      head.error = msg
      on_failure(head, msg)
    end
    for i = 2, #q do
      local t = q[i]
      t.timed_out = nil
      store:update_attempt(run_id, t.name, t.attempt, { status = "requeued" })
      t.attempt = t.attempt - 1
      set_state(t, "queued")
      push_ready(t)
    end
  end

  -- the loop: one store transaction per step, committed before the
  -- step's jobs are sent
  local evs = {}
  while true do
    store:begin()
    for _, ev in ipairs(evs) do
      if ev.kind == "result" then handle_result(ev)
      elseif ev.kind == "exit" then handle_exit(ev)
      elseif ev.kind == "signal" and not cancelled_by then cancel(ev.status) end
    end
    local tnow = mono()
    -- deadlines: the exit event of the killed worker records the failure
    for s = 0, exec.n - 1 do
      local h = slots[s].queue[1]
      if h and not h.timed_out and slots[s].head_start + h.spec.timeout * 1000 <= tnow then
        h.timed_out = true
        slots[s].killed_for = h
        exec:kill(s)
      end
    end
    if cancelled_by then store:commit(); break end
    -- retries that are due
    local i = 1
    while i <= #retrying do
      local t = retrying[i]
      if t.state ~= "up_for_retry" then
        remove(retrying, i)
      elseif t.next_try <= tnow then
        remove(retrying, i)
        set_state(t, "queued")
        push_ready(t)
      else
        i = i + 1
      end
    end
    -- dispatch
    local sends = {}
    while rq_head <= rq_tail do
      local s = pick_slot(tnow)
      if not s then break end
      local t = ready[rq_head]
      ready[rq_head] = nil
      rq_head = rq_head + 1
      if t.state == "queued" then
        t.attempt = t.attempt + 1
        local started = now()
        t.started_at = t.started_at or started
        store:start_attempt(run_id, t.name, t.attempt, started, t.started_at, exec:pid(s))
        move(t, "running")
        local q = slots[s].queue
        if #q == 0 then slots[s].head_start = tnow end
        q[#q + 1] = t
        local parts, sizes = build_job(t)
        sends[#sends + 1] = { s, t.spec.memory, parts, sizes }
      end
    end
    if rq_head > rq_tail then ready, rq_head, rq_tail = {}, 1, 0 end
    store:commit()
    for _, m in ipairs(sends) do
      local ok, err = exec:sendv(m[1], m[2], m[3], m[4])
      if not ok then error("executor: " .. tostring(err), 0) end
    end
    if view.tick then view.tick(self) end

    if counts.running == 0 and rq_head > rq_tail and #retrying == 0 then break end

    -- how long to wait: next deadline, next retry, view refresh
    local wait = view.interval or 1000
    tnow = mono()
    for s = 0, exec.n - 1 do
      local h = slots[s].queue[1]
      if h then wait = min(wait, slots[s].head_start + h.spec.timeout * 1000 - tnow) end
    end
    for _, t in ipairs(retrying) do wait = min(wait, t.next_try - tnow) end
    if rq_head <= rq_tail and counts.running < exec.n then wait = 0 end
    local perr
    evs, perr = exec:poll(max(0, math.ceil(wait)))
    if not evs then error("executor: " .. tostring(perr), 0) end
    -- group commit: while every worker still has jobs queued it stays busy,
    -- so let results gather for a moment and record them in one step
    if #evs > 0 and #evs < 2 * exec.n then
      local busy_all = true
      for s = 0, exec.n - 1 do
        if #slots[s].queue < 3 then busy_all = false; break end
      end
      if busy_all then
        local more = exec:poll(1)
        if more then for k = 1, #more do evs[#evs + 1] = more[k] end end
      end
    end
  end

  local status = "success"
  if cancelled_by then
    status = "cancelled"
  elseif counts.failed > 0 or counts.upstream_failed > 0 then
    status = "failed"
  end
  store:begin()
  store:update_run(run_id, { status = status, finished_at = now() })
  store:commit()
  store:checkpoint()
  self.status = status
  self.cancelled_by = cancelled_by
  if view.finish then view.finish(self) end
  return status, self
end

return M
