-- weir.engine: the DAG engine of the supervisor.
--
-- Keeps every task's state, dispatches ready tasks to worker slots, applies
-- retries with exponential backoff and jitter, enforces deadlines by
-- killing workers, propagates upstream failures and records every state
-- change in the store. Each step is one store transaction that is
-- committed before the step's jobs are sent, so nothing is acted on before
-- it is recorded and a killed supervisor leaves a run `weir resume` can
-- finish.
--
-- The engine is explicit state (M.new) and step functions: start() records
-- the initial states, step(events) applies what the executor reported and
-- returns the jobs to send, wait_ms() says how long to poll, done() when the
-- run is over and finish() records its status. M.drive is the one loop that
-- turns any such machine (this engine, the definition phase of
-- weir.pipeline) over an executor; nothing here polls by itself, so a test
-- can drive it with a fake executor and a fake clock.
--
-- The worker slots belong to a pool (M.pool) that several engines may
-- share: each queued attempt knows its engine (t.e), so a result or a
-- worker's death reaches the run it concerns. weir run drives one engine
-- over its own pool with Engine:step; weir serve (weir.runner) drives
-- many over one pool with the same functions (docs/adr/0019).
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
-- A worker's system-call filter kills it with SIGSYS on a call outside its
-- allow-list (runtime/seccomp.c, ADR 43): native code did something no
-- task needs, and would do it again, so the attempt is not retried.
local SIGSYS = -31

local function describe_exit(status)
  if status == SIGSYS then
    return "worker killed by SIGSYS: it made a system call outside the worker's"
      .. " allow-list (docs/security.md)"
  end
  if status < 0 then
    return format("worker killed by %s", SIGNAMES[status] or ("signal " .. -status))
  end
  return format("worker exited with code %d", status)
end
M.describe_exit = describe_exit

local function random_bytes(n)
  local F = require("weir._ffi")
  local buf = F.ffi.new("uint8_t[?]", n)
  F.C.weir_ffi_random(buf, n)
  return buf
end

--- A new run id: sortable by time, a random suffix of 48 bits (weir
-- serve may take thousands of runs a second).
function M.new_run_id()
  local b = random_bytes(6)
  return format("%s-%02x%02x%02x%02x%02x%02x", os.date("!%Y%m%dT%H%M%S"), b[0], b[1], b[2],
                b[3], b[4], b[5])
end

local Engine = {}
Engine.__index = Engine

--- A pool of worker slots over exec (n, kill(slot), pid(slot)): each
-- slot's queue of attempts sent to its worker, oldest first. shared: more
-- than one engine uses it (a cancelled run's attempts then stop their
-- workers instead of being dropped with the whole pool).
function M.pool(exec, o)
  o = o or {}
  local p = { exec = exec, n = exec.n, slots = {}, prefetch = o.prefetch or 8,
              shared = o.shared, mono = (o.clock or executor).mono }
  for i = 0, exec.n - 1 do p.slots[i] = { queue = {}, head_start = 0 } end
  return p
end

--- names (sorted) in DAG order: the tasks without dependencies by name,
-- then those whose dependencies all come before, by name, and so on. T:
-- name -> { deps, downs }.
function M.dag_order(T, names)
  local left, layer, out = {}, {}, {}
  for _, name in ipairs(names) do
    left[name] = #T[name].deps
    if left[name] == 0 then layer[#layer + 1] = name end
  end
  while #layer > 0 do
    local nxt = {}
    for _, name in ipairs(layer) do
      out[#out + 1] = name
      for _, d in ipairs(T[name].downs) do
        left[d] = left[d] - 1
        if left[d] == 0 then nxt[#nxt + 1] = d end
      end
    end
    table.sort(nxt)
    layer = nxt
  end
  return out
end

--- A new engine for one run. o: P (loaded pipeline), store, exec (n,
-- kill(slot), pid(slot)) or pool (M.pool: shared with other engines),
-- run_id, params, resume (bool) with resume_tasks
-- (the run's task rows) and rerun (task names to run again with what
-- follows them, even if they succeeded: weir retry --task; nil: those
-- that did not succeed), active_base (working time of its earlier
-- sessions, ms), only / from (task names), inputs (task name -> output
-- JSON text, given to the dependants of tasks only/from skip), prefetch,
-- view
-- (optional callbacks: task(T, event), tick(engine), finish(engine),
-- interval ms), roots, connections (normalized weir.yaml connections for
-- the workers), redact (a function that masks secrets in text: errors,
-- logs and outputs pass it before the store sees them), clock (now() wall
-- ms, mono() monotonic ms; default the executor's), project_dir (the
-- folder dataset paths are relative to, docs/adr/0030), lineage (an
-- exporter of weir.openlineage, optional: told of every attempt's start
-- and end). Nothing is recorded until start().
function M.new(o)
  local clock = o.clock or executor
  local pool = o.pool or M.pool(o.exec, { prefetch = o.prefetch, clock = clock })
  local e = setmetatable({
    P = o.P, store = o.store, exec = pool.exec, pool = pool, run_id = o.run_id,
    params = o.params,
    roots = o.roots, connections = o.connections, redact = o.redact,
    lineage = o.lineage,
    view = o.view or {},
    now = clock.now, mono = clock.mono,
    resume = o.resume, resume_tasks = o.resume_tasks, rerun = o.rerun, only = o.only,
    active_base = o.active_base or 0,
    from = o.from,
    inputs = o.inputs,
    T = {}, order = {},
    ready = {}, rq_head = 1, rq_tail = 0,
    retrying = {},
    behind = 0, -- attempts waiting behind another job on their worker
    counts = { queued = 0, running = 0, success = 0, failed = 0, up_for_retry = 0,
               upstream_failed = 0, skipped = 0, cancelled = 0 },
    slots = pool.slots,
  }, Engine)
  e.groups = { { e, k = 1 } }
  e.started = e.mono()
  local T, order = e.T, e.order
  for name, spec in pairs(e.P.tasks) do
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
  e.order = M.dag_order(T, order)
  -- a job: the fields every attempt of this run shares (encoded once), the
  -- task's (once per task) and the attempt's own, sent back to back
  e.job_base = ser.encode({ kind = "attempt", run_id = e.run_id, pipeline = e.P.name,
                            params = e.params, base_dir = e.P.base_dir, roots = e.roots,
                            connections = e.connections, logical_time = o.logical_time,
                            project_dir = o.project_dir, config_where = o.config_where })
  return e
end

-- the state in memory and the view (shown: what the view is told, when
-- not the state); the caller records it in the store
local function move(e, t, state, shown)
  local counts = e.counts
  counts[t.state] = counts[t.state] - 1
  counts[state] = counts[state] + 1
  t.state = state
  local vt = e.view.task
  if vt then vt(t, shown or state) end
end

local function set_state(e, t, state, fields)
  fields = fields or {}
  fields.state = state
  e.store:set_task(e.run_id, t.name, fields)
  move(e, t, state)
end

local function push_ready(e, t)
  e.rq_tail = e.rq_tail + 1
  e.ready[e.rq_tail] = t
end

-- the tasks --only / --from select (nil: all)
local function selection(e)
  if not (e.only or e.from) then return nil end
  local selected = {}
  local root = e.only or e.from
  selected[root] = true
  if e.from then
    local stack = { root }
    while #stack > 0 do
      local n = remove(stack)
      for _, d in ipairs(e.T[n].downs) do
        if not selected[d] then selected[d] = true; stack[#stack + 1] = d end
      end
    end
  end
  return selected
end

-- The tasks a resumed run runs again: those in rerun (default: every
-- task whose recorded state is not success or skipped, and every task
-- without a row: new in a reloaded pipeline), what follows them, and
-- whatever did not succeed upstream of those (a task needs its inputs).
local function rerun_set(e, rows)
  local T = e.T
  local done, set, stack = {}, {}, {}
  for _, row in pairs(rows) do
    if row.state == "success" or row.state == "skipped" then done[row.task] = true end
  end
  local function add(name)
    if T[name] and not set[name] then set[name] = true; stack[#stack + 1] = name end
  end
  if e.rerun then
    for _, name in ipairs(e.rerun) do add(name) end
  else
    for _, name in ipairs(e.order) do if not done[name] then add(name) end end
  end
  while #stack > 0 do
    local t = T[remove(stack)]
    for _, d in ipairs(t.downs) do add(d) end
    for _, d in ipairs(t.deps) do if not done[d] then add(d) end end
  end
  return set
end

--- Record the initial states (a new run's tasks, or a resumed run's tasks
-- put back in the queue) and the run as running; compute readiness.
function Engine:start()
  local T, order, counts, store = self.T, self.order, self.counts, self.store
  local selected = selection(self)
  store:begin()
  counts.queued = #order
  if self.resume then
    local rows, missing = {}, {}
    for _, row in ipairs(self.resume_tasks or {}) do rows[row.task] = row end
    for _, name in ipairs(order) do
      if not rows[name] then missing[#missing + 1] = name end
    end
    -- tasks a reloaded pipeline added
    if #missing > 0 then store:add_tasks(self.run_id, missing) end
    local again = rerun_set(self, rows)
    for _, name in ipairs(order) do
      local t, row = T[name], rows[name]
      if row then
        t.attempt, t.base = row.attempts or 0, row.attempts or 0
        if not again[name] then
          counts.queued = counts.queued - 1
          counts[row.state] = counts[row.state] + 1
          t.state, t.output, t.error = row.state, row.output, row.error
        elseif row.state ~= "queued" then
          set_state(self, t, "queued", { error = require("weir.connectors.sqlite").NULL,
                                         output = require("weir.connectors.sqlite").NULL })
        end
      end
    end
  else
    store:add_tasks(self.run_id, order)
    for _, name in ipairs(order) do
      if selected and not selected[name] then
        set_state(self, T[name], "skipped")
        -- the output a skipped task's dependants get (weir repl's .run)
        if self.inputs then T[name].output = self.inputs[name] end
      end
    end
  end
  self.session_start = self.now()
  store:update_run(self.run_id, { status = "running",
                                  started_at = not self.resume and self.session_start or nil,
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
    if t.state == "queued" and w == 0 then push_ready(self, t) end
  end
end

local function fail_downstream(e, t)
  local T = e.T
  local stack = { t }
  while #stack > 0 do
    local x = remove(stack)
    for _, dn in ipairs(x.downs) do
      local d = T[dn]
      if not TERMINAL[d.state] then
        set_state(e, d, "upstream_failed", { error = "upstream task " .. x.name .. " failed",
                                             finished_at = e.now() })
        stack[#stack + 1] = d
      end
    end
  end
end

local function on_success(e, t)
  local T = e.T
  for _, dn in ipairs(t.downs) do
    local d = T[dn]
    d.waiting = d.waiting - 1
    if d.waiting == 0 and d.state == "queued" then push_ready(e, d) end
  end
end

local function on_failure(e, t, msg, final)
  local spec = t.spec
  if not final and t.attempt - t.base <= spec.retries then
    local n = t.attempt - t.base
    local delay = min(spec.retry_delay * spec.retry_backoff ^ (n - 1), spec.retry_max_delay)
    delay = delay * (0.8 + 0.4 * random())
    t.next_try = e.mono() + delay * 1000
    -- what the view says: "retrying in 1.0s (attempt 2/3)"
    t.retry_in, t.next_attempt, t.max_attempts = delay, n + 1, spec.retries + 1
    set_state(e, t, "up_for_retry", { error = msg, next_try_at = e.now() + delay * 1000 })
    e.retrying[#e.retrying + 1] = t
  else
    set_state(e, t, "failed", { error = msg, finished_at = e.now() })
    fail_downstream(e, t)
  end
end

-- a job part as a userdata: thousands of long strings that differ in a
-- few bytes are costly to intern (weir/ser.h); a string if need be
local function part(v)
  local ud, n = encode_ud(v)
  if ud then return ud, n end
  local s = assert(ser.encode(v))
  return s, #s
end

local function build_job(e, t)
  local spec, T = t.spec, e.T
  local inputs
  for _, d in ipairs(t.deps) do
    local out = T[d].output
    if out then
      inputs = inputs or {}
      inputs[spec.input_names and spec.input_names[d] or d] = out
    end
  end
  if not t.job_task then
    t.job_task, t.job_task_n = part({
      fn = spec.fn and spec.fn.blob, src = spec.fn and spec.fn.src,
      chunkname = "=" .. e.P.file .. ":tasks." .. t.name, task = t.name,
      output_max = spec.output_max, log_max = spec.log_max, deps = t.deps,
      checks = spec.checks, check_fns = spec.check_fns,
      -- a template's task: its `with` values replace the run's params
      params = spec.params and require("weir.templates").task_params(spec, e.params),
    })
  end
  local own, own_n = part({ attempt = t.attempt, inputs = inputs,
                            seed = random(1, 2147483646) })
  return { e.job_base, t.job_task, own }, { #e.job_base, t.job_task_n, own_n }
end

-- An idle worker first. Queue a job behind a running one only when there
-- is a backlog (more ready tasks than workers) and that worker's current
-- job started less than 5 ms ago: short tasks then stream through without
-- a round trip each, and a task is never parked behind a long one while
-- another worker could take it.
local function pick_slot(pool, tnow, backlog)
  local slots, n = pool.slots, pool.n
  local best, best_n
  for i = 0, n - 1 do
    if #slots[i].queue == 0 then return i end
  end
  if backlog <= n then return nil end
  for i = 0, n - 1 do
    local q = #slots[i].queue
    if q < pool.prefetch and tnow - slots[i].head_start < 5 then
      if not best or q < best_n then best, best_n = i, q end
    end
  end
  return best
end

-- Cancel the run: why is the signal number (SIGINT/SIGTERM of weir run)
-- or a text (a request of weir serve). Its attempts in the slots' queues
-- are cancelled; on a shared pool their workers are stopped (the others'
-- attempts there go back to their queues, uncharged, see handle_exit).
local function cancel(e, why)
  e.cancelled_by = why
  local now, pool = e.now, e.pool
  local reason = type(why) == "number" and "run cancelled by signal " .. why or why
  for i = 0, pool.n - 1 do
    local slot = pool.slots[i]
    local mine = false
    for _, t in ipairs(slot.queue) do
      if t and t.e == e and not t.dropped then
        e.store:update_attempt(e.run_id, t.name, t.attempt, { status = "cancelled",
                                                              finished_at = now() })
        t.dropped, mine = true, true
      end
    end
    if mine then
      if pool.shared then
        slot.cancel_kill = true
        pool.exec:kill(i)
      else
        slot.queue = {}
      end
    end
  end
  for _, name in ipairs(e.order) do
    local t = e.T[name]
    if not TERMINAL[t.state] then
      set_state(e, t, "cancelled", { finished_at = now(), error = reason })
    end
  end
end
M.cancel = cancel

-- The attempt now at the head of slot's queue starts running: until then
-- it waited behind another job on that worker (prefetched, see
-- pick_slot), shown as queued and not charged for the wait. The store's
-- start times are moved only when the wait was long enough to matter (a
-- stream of short tasks pays no extra write).
local function head_starts(slot, tnow)
  local h = slot.queue[1]
  if not h or not h.behind then return end
  h.behind = nil
  local e = h.e
  e.behind = e.behind - 1
  if not h.dropped then
    if tnow - h.sent_at >= 100 then
      local started = e.now()
      e.store:update_attempt(e.run_id, h.name, h.attempt, { started_at = started })
      if h.first_start then
        h.started_at = started
        e.store:set_task(e.run_id, h.name, { started_at = started })
      end
    end
    local vt = e.view.task
    if vt then vt(h, "running") end
  end
end

-- A progress frame of the attempt at the head of the slot: rows so far
-- (the live view) and the log lines written since the last one.
local function handle_progress(pool, ev)
  local t = pool.slots[ev.slot].queue[1]
  local r = ev.result
  if not t or t.dropped or type(r) ~= "table" then return end
  local e = t.e
  t.rows_in, t.rows_out, t.rejected = r.rows_in, r.rows_out, r.rejected
  local vp = e.view.progress
  if vp then
    local lines = type(r.log) == "table" and r.log or nil
    if lines and e.redact then
      for i = 1, #lines do lines[i] = e.redact(tostring(lines[i])) end
    end
    vp(t, lines)
  end
end

local function handle_result(pool, ev)
  local slot = pool.slots[ev.slot]
  local t = remove(slot.queue, 1)
  slot.head_start = pool.mono()
  head_starts(slot, slot.head_start)
  if not t or t.dropped then return end
  local e = t.e
  -- the result won the race against a deadline kill: the kill now hits
  -- nothing of this task (see handle_exit)
  t.timed_out = nil
  -- from a worker that ran user code: decoded as plain data by the
  -- executor (the C decoder, never the Lua one, which the JIT compiles)
  local res = ev.result
  if type(res) ~= "table" then res = { status = "failed", error = "unreadable result" } end
  local fin = e.now()
  res.finished_at = fin
  -- a task whose code does not load never will: not retried
  if res.kind == "load" then res.retry = false end
  if res.status ~= "success" and res.kind == "memory" then
    -- the same input hits the same cap again: not retried
    res.error = format("memory limit of %s exceeded", util.human_size(t.spec.memory))
    res.retry = false
  end
  -- downstream tasks get the output as the task returned it; the store
  -- and the screen get it with the secrets of weir.yaml masked
  local output = res.output
  local redact = e.redact
  if redact then
    res.error, res.log = redact(res.error), redact(res.log)
    if res.output then res.output = redact(res.output) end
  end
  local store, run_id = e.store, e.run_id
  store:finish_attempt(run_id, t.name, t.attempt, res)
  if type(res.checks) == "table" then
    -- what the task's checks found; observed values and sample rows are
    -- JSON text from the worker, masked here like its log
    if redact then
      for _, c in ipairs(res.checks) do
        for _, k in ipairs({ "observed", "samples", "message" }) do
          if type(c[k]) == "string" then c[k] = redact(c[k]) end
        end
      end
    end
    store:add_checks(run_id, t.name, t.attempt, res.checks)
  end
  t.rows_in, t.rows_out, t.rejected = res.rows_in, res.rows_out, res.rejected
  local datasets = res.lineage
  if type(datasets) == "table" then
    -- names hold no credential by construction; a host or table that is
    -- a weir.yaml secret still shows as *** (as weir.config.describe)
    if redact then for _, d in ipairs(datasets) do d.dataset = redact(d.dataset) end end
    store:add_lineage(run_id, t.name, t.attempt, e.P.name, res.status, fin, datasets)
  end
  if e.lineage then e.lineage:finished(e, t, res.status, fin, datasets, res.error) end
  if res.status == "success" then
    t.output = output
    store:task_succeeded(run_id, t.name, res.output, fin, res.rows_in or 0, res.rows_out or 0)
    move(e, t, "success")
    on_success(e, t)
  else
    local msg = res.error or "failed"
    t.error = msg
    on_failure(e, t, msg, res.retry == false)
  end
end

local function handle_exit(pool, ev)
  local slot = pool.slots[ev.slot]
  local q = slot.queue
  slot.queue = {}
  slot.head_start = pool.mono()
  local head = q[1]
  local killed = slot.killed_for
  slot.killed_for = nil
  if slot.cancel_kill then
    -- stopped for a cancelled run's attempt: no one else is charged
    slot.cancel_kill = nil
    for i = #q, 1, -1 do q[i + 1] = q[i] end
    q[1], head = false, nil
  elseif killed and head ~= killed then
    -- killed for a deadline whose task's result arrived first: the head
    -- had not been charged for anything, so it goes back too
    head = nil
    for i = #q, 1, -1 do q[i + 1] = q[i] end
    q[1] = false
  end
  if head and head.dropped then head = nil end
  if head then
    local e = head.e
    local msg
    if head.timed_out then
      msg = format("timed out after %s (worker killed)", util.human_duration(head.spec.timeout))
    else
      msg = describe_exit(ev.status) .. " during the attempt"
    end
    head.timed_out = nil
    e.store:update_attempt(e.run_id, head.name, head.attempt, { status = "failed",
                                                               finished_at = e.now(),
                                                               error = msg })
    head.error = msg
    if e.lineage then e.lineage:finished(e, head, "failed", e.now(), nil, msg) end
    on_failure(e, head, msg, ev.status == SIGSYS)
  end
  for i = 2, #q do
    local t = q[i]
    if t and t.behind then t.behind = nil; t.e.behind = t.e.behind - 1 end
    if t and not t.dropped then
      local e = t.e
      t.timed_out = nil
      e.store:update_attempt(e.run_id, t.name, t.attempt, { status = "requeued" })
      t.attempt = t.attempt - 1
      set_state(e, t, "queued")
      push_ready(e, t)
    end
  end
end

-- Kill the workers whose head attempt passed its deadline (the exit
-- event records the failure).
local function kill_overdue(pool, tnow)
  local slots = pool.slots
  for s = 0, pool.n - 1 do
    local h = slots[s].queue[1]
    if h and not h.dropped and not h.timed_out
       and slots[s].head_start + h.spec.timeout * 1000 <= tnow then
      h.timed_out = true
      slots[s].killed_for = h
      pool.exec:kill(s)
    end
  end
end

-- Requeue the retries of e that are due.
local function due_retries(e, tnow)
  local retrying = e.retrying
  local i = 1
  while i <= #retrying do
    local t = retrying[i]
    if t.state ~= "up_for_retry" then
      remove(retrying, i)
    elseif t.next_try <= tnow then
      remove(retrying, i)
      set_state(e, t, "queued")
      push_ready(e, t)
    else
      i = i + 1
    end
  end
end

-- Start attempt of t (queued, of engine e) on slot s.
local function start_task(e, t, s, tnow, sends)
  t.attempt = t.attempt + 1
  -- what the views see of this attempt is its own, never the last one's
  t.error = nil
  local started = e.now()
  t.first_start = t.started_at == nil
  t.started_at = t.started_at or started
  e.store:start_attempt(e.run_id, t.name, t.attempt, started, t.started_at, e.exec:pid(s))
  if e.lineage then e.lineage:started(e, t, started) end
  local slot = e.slots[s]
  local q = slot.queue
  t.e = e
  t.rows_in, t.rows_out, t.rejected = nil, nil, nil
  if #q == 0 then
    slot.head_start = tnow
    move(e, t, "running")
  else
    -- behind another job on this worker: counted as running (the run is
    -- not over), shown as queued until it reaches the head
    t.behind, t.sent_at = true, tnow
    e.behind = e.behind + 1
    move(e, t, "running", "queued")
  end
  q[#q + 1] = t
  local parts, sizes = build_job(e, t)
  sends[#sends + 1] = { s, t.spec.memory, parts, sizes }
end

-- Dispatch ready tasks to slots, fairly: groups (the pipelines, for weir
-- serve) take turns, one task each, and within a group its engines (runs)
-- take turns (g.k is the group's cursor). Adds the jobs to sends.
local function dispatch(pool, groups, tnow, sends)
  local backlog = 0
  for gi = 1, #groups do
    local g = groups[gi]
    for k = 1, #g do backlog = backlog + g[k].rq_tail - g[k].rq_head + 1 end
  end
  local gi, ng = 1, #groups
  while backlog > 0 do
    local s = pick_slot(pool, tnow, backlog)
    if not s then break end
    -- the next group with a ready task, then its next engine with one
    local g, e
    while true do
      g = groups[gi]
      gi = gi % ng + 1
      for _ = 1, #g do
        local c = g[g.k]
        g.k = g.k % #g + 1
        if c.rq_head <= c.rq_tail then e = c; break end
      end
      if e then break end
    end
    local t = e.ready[e.rq_head]
    e.ready[e.rq_head] = nil
    e.rq_head = e.rq_head + 1
    backlog = backlog - 1
    if t.state == "queued" then start_task(e, t, s, tnow, sends) end
  end
  for g = 1, ng do
    for k = 1, #groups[g] do
      local e = groups[g][k]
      if e.rq_head > e.rq_tail then e.ready, e.rq_head, e.rq_tail = {}, 1, 0 end
    end
  end
end
M.handle = { result = handle_result, exit = handle_exit, progress = handle_progress }
M.kill_overdue, M.due_retries, M.dispatch = kill_overdue, due_retries, dispatch

--- One step, one store transaction: apply the executor's events (results,
-- worker exits, a signal that cancels the run), kill workers whose head
-- attempt passed its deadline (the exit event records the failure),
-- requeue retries that are due, dispatch ready tasks. Returns the jobs to
-- send, { slot, cap, parts, sizes } each: they are committed, and sending
-- them is the caller's (M.drive's) part.
function Engine:step(evs)
  local store, pool = self.store, self.pool
  store:begin()
  for _, ev in ipairs(evs) do
    local kind = ev.kind
    if kind == "result" then handle_result(pool, ev)
    elseif kind == "progress" then handle_progress(pool, ev)
    elseif kind == "exit" then handle_exit(pool, ev)
    elseif kind == "signal" and not self.cancelled_by then cancel(self, ev.status) end
  end
  local tnow = self.mono()
  kill_overdue(pool, tnow)
  local sends = {}
  if self.cancelled_by then store:commit(); return sends end
  due_retries(self, tnow)
  dispatch(pool, self.groups, tnow, sends)
  store:commit()
  if self.lineage then self.lineage:tick() end
  local tick = self.view.tick
  if tick then tick(self) end
  return sends
end

--- The run is over: cancelled, or nothing running, ready or waiting to
-- retry.
function Engine:done()
  return self.cancelled_by ~= nil
         or (self.counts.running == 0 and self.rq_head > self.rq_tail and #self.retrying == 0)
end

--- How long to wait for events (ms): the next deadline, the next retry,
-- the view's refresh; 0 when a ready task waits for a free worker.
function Engine:wait_ms()
  local tnow = self.mono()
  local wait = M.pool_wait(self.pool, tnow, self.view.interval or 1000)
  return max(0, math.ceil(self:retry_wait(tnow, wait)))
end

-- wait (ms) shortened to e's next retry, or to 0 when a ready task waits
-- and a slot is idle
function Engine:retry_wait(tnow, wait)
  for _, t in ipairs(self.retrying) do wait = min(wait, t.next_try - tnow) end
  if self.rq_head <= self.rq_tail then
    local slots = self.slots
    for s = 0, self.pool.n - 1 do
      if #slots[s].queue == 0 then return 0 end
    end
  end
  return wait
end

--- wait (ms) shortened to the pool's next deadline.
function M.pool_wait(pool, tnow, wait)
  local slots = pool.slots
  for s = 0, pool.n - 1 do
    local h = slots[s].queue[1]
    if h and not h.dropped then
      wait = min(wait, slots[s].head_start + h.spec.timeout * 1000 - tnow)
    end
  end
  return wait
end

--- Group commit: while every worker still has jobs queued it stays busy,
-- so a few results may gather for a moment (1 ms) and be recorded in one
-- step. nev: the number of events just polled.
function Engine:gather(nev)
  return M.pool_gather(self.pool, nev)
end

--- Whether to poll 1 ms more after nev events (Engine:gather).
function M.pool_gather(pool, nev)
  local n = pool.n
  if nev == 0 or nev >= 2 * n then return false end
  for s = 0, n - 1 do
    if #pool.slots[s].queue < 3 then return false end
  end
  return true
end

--- Record the run's final status ("success", "failed" or "cancelled") and
-- return it.
function Engine:finish()
  local counts = self.counts
  local status = "success"
  if self.cancelled_by then
    status = "cancelled"
  elseif counts.failed > 0 or counts.upstream_failed > 0 then
    status = "failed"
  end
  local store = self.store
  store:begin()
  -- the working time: the sessions' (weir resume, weir retry), not the
  -- gaps between them
  local now = self.now()
  store:update_run(self.run_id, { status = status, finished_at = now,
                                  active_ms = self.active_base + (now - self.session_start) })
  store:commit()
  if not self.pool.shared then store:checkpoint() end
  self.status, self.ended = status, self.mono()
  local vf = self.view.finish
  if vf then vf(self) end
  return status
end

--- The one loop: turn machine m over exec until m:done(). m:step(events)
-- returns the jobs to send ({ slot, cap, parts, sizes }); m:wait_ms() how
-- long to poll; m:gather(n) (optional) whether to poll 1 ms more after n
-- events. Raises on executor failure.
function M.drive(m, exec)
  local evs = {}
  local sendv = exec.sendv
  while true do
    local sends = m:step(evs)
    for k = 1, #sends do
      local j = sends[k]
      local ok, err = sendv(exec, j[1], j[2], j[3], j[4])
      if not ok then error("executor: " .. tostring(err), 0) end
    end
    if m:done() then return end
    local perr
    evs, perr = exec:poll(m:wait_ms())
    if not evs then error("executor: " .. tostring(perr), 0) end
    if m.gather and m:gather(#evs) then
      local more = exec:poll(1)
      if more then for k = 1, #more do evs[#evs + 1] = more[k] end end
    end
  end
end

--- Run (or resume) a run to its end: new(o), start, drive, finish.
-- Returns the final status and the engine.
function M.run(o)
  math.randomseed(M.seed())
  local e = M.new(o)
  e:start()
  M.drive(e, o.exec)
  return e:finish(), e
end

--- 32 random bits (seeds math.random for jitter and attempt seeds).
function M.seed()
  local b = random_bytes(4)
  return ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]
end

return M
