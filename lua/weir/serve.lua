-- weir.serve: the long-running service (weir serve).
--
-- One supervisor process, one worker pool, many runs at once: the runs
-- are weir.engine machines turned by weir.runner over the shared pool;
-- HTTP requests come from weir.http (runtime/http.c: libmicrohttpd's
-- threads parse, this Lua loop answers), routed by weir.api. One loop
-- polls the pool and the HTTP queue together (the executor watches the
-- server's descriptor), so a request is answered between two engine
-- steps and every answer reflects committed state.
--
-- Admission: a triggered run is recorded `queued` before it is
-- acknowledged; queued runs start while fewer than serve.max_active_runs
-- are active and fewer than the pipeline's max_active_runs of its own;
-- pipelines take turns (one busy pipeline cannot starve the others).
-- SIGTERM or SIGINT: stop taking triggers, let the active runs go on for
-- serve.drain, then stop; the next start resumes what was left (runs
-- still queued start, runs left running are taken over). docs/adr/0019.
local run = require("weir.run")
local pipeline = require("weir.pipeline")
local engine = require("weir.engine")
local executor = require("weir.executor")
local runner_mod = require("weir.runner")
local json = require("weir.json")
local scheduler = require("weir.scheduler")
local triggers = require("weir.triggers")
local util = require("weir.util")
local format = string.format

local M = {}
local Service = {}
Service.__index = Service

local KINDS = { lua = true, yaml = true, yml = true, json = true }

--- The buckets of the duration histograms of /metrics (seconds).
M.BUCKETS = { 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600 }

--- Count secs in histogram h ({ sum, [i] = count of bucket i, inf }).
function M.observe(h, secs)
  h.sum = h.sum + secs
  for i, le in ipairs(M.BUCKETS) do
    if secs <= le then h[i] = (h[i] or 0) + 1; return end
  end
  h.inf = (h.inf or 0) + 1
end

--- A service. o: config (weir.yaml path), listen, workers (override the
-- serve section), log(line) (default stderr).
function M.new(o)
  return setmetatable({
    o = o, log = o.log or function(line) io.stderr:write(line, "\n") end,
    now = o.clock or executor.now, -- wall clock (ms) of the schedules
    catalog = {},      -- pipeline name -> { name, P, version_id, pipeline_id, file }
    by_version = {},   -- version id -> P
    queue = {},        -- pipeline name -> FIFO of run ids
    batch_of = {},     -- run id -> { key = backfill batch, max = its max_active }
    batch_n = {},      -- backfill batch -> its active runs
    qnames = {}, qnext = 1, queued = 0,
    waiters = {},      -- run id -> { { id = request id, deadline = mono ms } }
    streams = {},      -- run id -> its open event streams (weir.http)
    pending = {},      -- events of the last step: { run id, event, data }
    ended = {},        -- runs that ended in the last step
    stats = { finished = {}, triggered = 0, tasks = {}, rows_in = 0, rows_out = 0,
              run_seconds = { sum = 0 }, task_seconds = { sum = 0 } },
  }, Service)
end

-- Evaluate a pipeline file (or stored source) in the definition pool: a
-- Lua pipeline is run by a worker, never by the supervisor.
function Service:define(path, source, kind)
  return pipeline.load(path, { exec = self.defexec, source = source, kind = kind,
                               catalog = function()
                                 return require("weir.templates").catalog(self.conf.cfg)
                               end })
end

-- The files of the configured pipelines folders.
local function pipeline_files(dirs)
  local F = require("weir._ffi")
  local files = {}
  for _, d in ipairs(dirs) do
    local list = util.list_dir(d)
    if list then
      for _, name in ipairs(list) do
        local ext = name:match("%.(%w+)$")
        if ext and KINDS[ext] then
          local p = util.join(d, name)
          if F.C.weir_ffi_path_kind(p) == F.C.WEIR_KIND_FILE then files[#files + 1] = p end
        end
      end
    end
  end
  table.sort(files)
  return files
end

--- (Re)load the pipelines of the configured folders: each distinct source
-- becomes a version in the store; a run keeps the version it was given.
-- Returns the number loaded and a list of error lines.
function Service:load_pipelines()
  local errs, seen, n = {}, {}, 0
  for _, file in ipairs(pipeline_files(self.conf.cfg.pipelines)) do
    local P, perr = self:define(file)
    if not P then
      errs[#errs + 1] = pipeline.format_errors(perr)
    elseif seen[P.name] then
      errs[#errs + 1] = format("%s: pipeline %s is also defined in %s; ignored", file, P.name,
                               seen[P.name])
    else
      seen[P.name] = file
      local vid, pid = self.store:pipeline_version(P.name, P.kind, P.path, P.source, P.hash,
                                                   executor.now())
      self.catalog[P.name] = { name = P.name, P = P, version_id = vid, pipeline_id = pid,
                               file = file }
      self.by_version[vid] = P
      n = n + 1
    end
  end
  -- a pipeline whose file is gone can no longer be triggered
  for name, c in pairs(self.catalog) do
    if not seen[name] and not c.uploaded then self.catalog[name] = nil end
  end
  for _, e in ipairs(errs) do self.log("weir serve: " .. e) end
  self.next_schedule = nil -- look at the (new) schedules at once
  return n, errs
end

--- The pipeline of a stored version (defined again from its source when
-- it is not the current one). Returns P, or nil, message.
function Service:version_P(vid)
  local P = self.by_version[vid]
  if P then return P end
  local v = self.store:version(vid)
  if not v then return nil, "no pipeline version " .. tostring(vid) end
  local errs
  P, errs = self:define(v.path, v.source, v.kind)
  if not P then return nil, pipeline.format_errors(errs) end
  self.by_version[vid] = P
  return P
end

-- A backfill run limited to max_active runs of its batch at once
-- (options { backfill = batch id, max_active = N }): remembered by run id.
local function note_batch(self, id, options)
  if type(options) == "string" then options = json.decode(options) end
  if type(options) == "table" and type(options.backfill) == "string" and options.max_active then
    self.batch_of[id] = { key = options.backfill, max = options.max_active }
  end
end

-- Count run id in (d = 1) or out (d = -1) of its batch's active runs.
local function batch_active(self, id, d)
  local b = self.batch_of[id]
  if not b then return end
  local n = (self.batch_n[b.key] or 0) + d
  self.batch_n[b.key] = n > 0 and n or nil
  if d < 0 then self.batch_of[id] = nil end
end

-- Whether queued run id may start as far as its batch is concerned.
local function batch_allows(self, id)
  local b = self.batch_of[id]
  return not b or (self.batch_n[b.key] or 0) < b.max
end

local function enqueue(self, name, id)
  local q = self.queue[name]
  if not q then
    q = { head = 1, tail = 0 }
    self.queue[name] = q
    self.qnames[#self.qnames + 1] = name
  end
  q.tail = q.tail + 1
  q[q.tail] = id
  self.queued = self.queued + 1
end

-- A queued run of pipeline c, as store:create_run takes it: params and
-- options as JSON text, lt its logical time (ms) or nil.
local function queued_row(c, params, options, now, lt)
  return { id = engine.new_run_id(), pipeline_id = c.pipeline_id, version_id = c.version_id,
           status = "queued", params = params, options = options, created_at = now,
           logical_time = lt }
end

--- Record a new run of pipeline name, queued. params: name -> value (JSON
-- values or strings), checked against the pipeline's. trigger: who asked
-- (recorded with the run). extra(store, id) runs inside the same
-- transaction (the idempotency key). Returns the run id and { version_id,
-- created_at, params }, or nil, problem ({ status, title, detail }).
function Service:trigger(name, params, trigger, extra)
  local c = self.catalog[name]
  if not c then return nil, { status = 404, title = "no such pipeline", detail = name } end
  local resolved, perr = pipeline.resolve_params(c.P, params)
  if not resolved then return nil, { status = 422, title = "invalid params", detail = perr } end
  local store = self.store
  local now = self.now()
  local row = queued_row(c, json.encode(resolved), json.encode({ trigger = trigger }), now)
  local id = row.id
  store:begin()
  local ok, err = pcall(function()
    store:create_run(row)
    if extra then extra(store, id) end
    store:commit()
  end)
  if not ok then
    pcall(store.rollback, store)
    return nil, err
  end
  self.stats.triggered = self.stats.triggered + 1
  enqueue(self, name, id)
  return id, { version_id = c.version_id, created_at = now, params = resolved }
end

-- The limit of active runs of pipeline P.
function Service:pipeline_limit(P)
  return P and P.def.max_active_runs or self.settings.pipeline_max_active_runs
end

--- Start queued runs while the limits allow, pipelines taking turns; at
-- most ADMIT_STEP in one turn of the loop, so that requests wait for a
-- bounded time behind them.
local ADMIT_STEP = 16

function Service:admit()
  local r, max_active = self.runner, self.settings.max_active_runs
  local budget = ADMIT_STEP
  while self.queued > 0 and r.active < max_active and budget > 0 do
    budget = budget - 1
    local started = false
    local names = self.qnames
    for _ = 1, #names do
      local i = self.qnext
      self.qnext = i % #names + 1
      local name = names[i]
      local q = self.queue[name]
      local c = self.catalog[name]
      if q.head <= q.tail and r:count(name) < self:pipeline_limit(c and c.P)
         and batch_allows(self, q[q.head]) then
        local id = q[q.head]
        q[q.head] = nil
        q.head = q.head + 1
        self.queued = self.queued - 1
        self:start_run(id)
        started = true
        break
      end
    end
    if not started then break end
  end
  -- forget the pipelines whose queue is empty
  local keep = {}
  for _, name in ipairs(self.qnames) do
    local q = self.queue[name]
    if q.head <= q.tail then keep[#keep + 1] = name else self.queue[name] = nil end
  end
  self.qnames = keep
  if self.qnext > #keep then self.qnext = 1 end
end

local function fail_run(self, id, why)
  local store = self.store
  store:begin()
  store:update_run(id, { status = "failed", error = why, finished_at = executor.now() })
  store:commit()
  self.log(format("weir serve: run %s failed to start: %s", id, why))
  self:notify(id)
end

-- Claim queued run id and give it to the runner.
function Service:start_run(id)
  local store = self.store
  if not store:claim_queued(id, executor.getpid(), run.identity(executor.getpid())) then
    return -- another supervisor took it
  end
  local row = store:run(id)
  local P, err = self:version_P(row.version_id)
  if not P then return fail_run(self, id, err) end
  batch_active(self, id, 1)
  self.runner:add({ P = P, run_id = id, params = json.decode(row.params),
                    roots = run.roots_for(P.base_dir), connections = self.conf.connections,
                    redact = self.conf.redact, view = self:view_for(id),
                    logical_time = row.logical_time and scheduler.iso(row.logical_time) })
end

--- A source given over HTTP, evaluated in the definition worker as if it
-- were the file name.kind of the first pipelines folder. Returns P, or
-- nil, errors.
function Service:define_source(name, source, kind)
  local dir = self.conf.cfg.pipelines[1] or run.home()
  return self:define(util.join(pipeline.abspath(dir), name .. "." .. kind), source, kind)
end

--- Store an uploaded pipeline's version and make it the current one.
-- Returns the catalog entry and whether the pipeline is new.
function Service:add_uploaded(P)
  local vid, pid = self.store:pipeline_version(P.name, P.kind, P.path, P.source, P.hash,
                                               executor.now())
  local created = self.catalog[P.name] == nil
  local c = { name = P.name, P = P, version_id = vid, pipeline_id = pid, uploaded = true }
  self.catalog[P.name] = c
  self.by_version[vid] = P
  return c, created
end

---------------------------------------------------------------------------
-- Live events (Server-Sent Events): state changes are collected during an
-- engine step and sent after its commit, so a client never sees a state
-- the store does not hold.
---------------------------------------------------------------------------

-- The engine view of run id: collects task state changes while someone
-- listens to the run.
local TASK_DONE = { success = true, failed = true, up_for_retry = true,
                    upstream_failed = true, cancelled = true }

function Service:view_for(id)
  local st = self.stats
  return {
    task = function(t, state)
      if state == "running" then
        t.view_start = executor.mono()
      elseif TASK_DONE[state] then
        st.tasks[state] = (st.tasks[state] or 0) + 1
        if t.view_start then
          M.observe(st.task_seconds, (executor.mono() - t.view_start) / 1000)
          t.view_start = nil
        end
        if state == "success" then
          st.rows_in = st.rows_in + (t.rows_in or 0)
          st.rows_out = st.rows_out + (t.rows_out or 0)
        end
      end
      if self.streams[id] then
        local p = self.pending
        p[#p + 1] = { id, "task", { task = t.name, state = state, attempt = t.attempt } }
      end
    end,
  }
end

local function sse(event, data)
  return "event: " .. event .. "\ndata: " .. json.encode(data) .. "\n\n"
end

local function run_snapshot(store, id)
  local row = store:run(id)
  local tasks = {}
  for i, t in ipairs(store:tasks(id)) do
    tasks[i] = { task = t.task, state = t.state, attempts = t.attempts }
  end
  return { id = row.id, pipeline = row.pipeline, status = row.status,
           tasks = setmetatable(tasks, json.array_mt) }
end

local TERMINAL_RUN = { success = true, failed = true, cancelled = true }

--- Open an event stream of run row for req: a snapshot first, then each
-- change; closed when the run ends.
function Service:subscribe(req, row)
  local st = self.http:stream(req.id, 200, { ["Content-Type"] = "text/event-stream",
                                             ["Cache-Control"] = "no-store" })
  if not st then return end
  local snap = run_snapshot(self.store, row.id)
  st:write(sse("run", snap))
  if TERMINAL_RUN[snap.status] then
    st:close()
    return
  end
  local list = self.streams[row.id] or {}
  self.streams[row.id] = list
  list[#list + 1] = st
end

-- Send what the last step collected; answer the requests waiting for the
-- runs that ended and end their streams.
function Service:flush_events(ended)
  local p = self.pending
  for i = 1, #p do
    local id, event, data = p[i][1], p[i][2], p[i][3]
    local list = self.streams[id]
    if list then
      local text = sse(event, data)
      local k = 1
      while k <= #list do
        if list[k]:write(text) then
          k = k + 1
        else
          list[k]:close()
          table.remove(list, k)
        end
      end
    end
    p[i] = nil
  end
  for _, id in ipairs(ended) do
    local ws = self.waiters[id]
    if ws then
      self.waiters[id] = nil
      for _, w in ipairs(ws) do w.done(id) end
    end
    local list = self.streams[id]
    if list then
      self.streams[id] = nil
      local text = sse("run", run_snapshot(self.store, id))
      for _, st in ipairs(list) do
        st:write(text)
        st:close()
      end
    end
  end
end

-- Take over a run left running by a supervisor that is gone.
function Service:resume_run(row)
  local store = self.store
  local claimed, cerr = run.claim(store, row.id)
  if not claimed then return nil, cerr.message end
  local P, err = self:version_P(row.version_id)
  if not P then fail_run(self, row.id, err); return nil, err end
  run.mark_lost(store, row.id)
  local options = json.decode(row.options) or {}
  note_batch(self, row.id, options)
  batch_active(self, row.id, 1)
  self.log(format("weir serve: resuming run %s of %s", row.id, row.pipeline))
  self.runner:add({ P = P, run_id = row.id, params = json.decode(row.params),
                    roots = run.roots_for(P.base_dir), connections = self.conf.connections,
                    redact = self.conf.redact, resume = true,
                    resume_tasks = store:tasks(row.id), only = options.only,
                    from = options.from, view = self:view_for(row.id),
                    logical_time = row.logical_time and scheduler.iso(row.logical_time) })
  return true
end

--- At start: queued runs go back in the queue (oldest first), runs left
-- running by a supervisor that is gone are resumed.
function Service:recover()
  local store = self.store
  for _, row in ipairs(store:runs_by_status("running", 100000)) do
    if not run.supervisor_alive(row) then self:resume_run(row) end
  end
  for _, row in ipairs(store:runs_by_status("queued", 1000000)) do
    note_batch(self, row.id, row.options)
    enqueue(self, row.pipeline, row.id)
  end
end

--- A run ended (or failed to start, or was cancelled while queued): the
-- requests waiting for it and its event streams are answered by the loop
-- once what ended it is committed (flush_events).
function Service:notify(id)
  self.ended[#self.ended + 1] = id
end

--- Wait for run id to end, at most ms: done(id) is called when it ends,
-- timeout(id) when the time is up.
function Service:wait_for(id, ms, done, timeout)
  local ws = self.waiters[id] or {}
  self.waiters[id] = ws
  ws[#ws + 1] = { done = done, timeout = timeout, deadline = executor.mono() + ms }
end

local function expire_waiters(self)
  local now = executor.mono()
  for id, ws in pairs(self.waiters) do
    local i = 1
    while i <= #ws do
      if ws[i].deadline <= now then
        local w = table.remove(ws, i)
        w.timeout(id)
      else
        i = i + 1
      end
    end
    if #ws == 0 then self.waiters[id] = nil end
  end
end

local function next_wait(self, wait)
  local now = executor.mono()
  for _, ws in pairs(self.waiters) do
    for _, w in ipairs(ws) do wait = math.min(wait, math.max(0, w.deadline - now)) end
  end
  if self.drain_until then wait = math.min(wait, math.max(0, self.drain_until - now)) end
  if self.next_schedule then
    wait = math.min(wait, math.max(0, self.next_schedule - self.now()))
  end
  if self.next_trigger then
    wait = math.min(wait, math.max(0, self.next_trigger - self.now()))
  end
  return math.ceil(wait)
end

---------------------------------------------------------------------------
-- Schedules: every turn that reaches the next due time asks weir.scheduler
-- what to fire; store:fire records each fire with its run, once ever.
---------------------------------------------------------------------------

--- Fire pipeline c at the logical times lts (ms, oldest first; kind
-- "schedule" or "backfill"): one queued run each with the params'
-- defaults, all recorded in one transaction, a logical time already
-- fired skipped unless rerun. options: recorded with each run. Returns
-- created, skipped, or nil, message.
function Service:fire_times(c, lts, kind, rerun, options)
  local params, perr = pipeline.resolve_params(c.P, {}, lts[1])
  if not params then return nil, perr end
  -- the same params for every logical time, unless a default names it
  local per_time = pipeline.defaults_use_time(c.P)
  local store, now = self.store, self.now()
  local encoded, opts = json.encode(params), json.encode(options)
  local ids, skipped = {}, 0
  store:begin()
  local ok, err = pcall(function()
    for _, lt in ipairs(lts) do
      if per_time then encoded = json.encode(assert(pipeline.resolve_params(c.P, {}, lt))) end
      local row = queued_row(c, encoded, opts, now, lt)
      local fresh = true
      if rerun then store:create_run(row) else
        fresh = store:fire(c.pipeline_id, lt, kind, row, now)
      end
      if fresh then ids[#ids + 1] = row.id else skipped = skipped + 1 end
    end
    store:commit()
  end)
  if not ok then
    pcall(store.rollback, store)
    error(err, 0)
  end
  for _, id in ipairs(ids) do
    note_batch(self, id, options)
    enqueue(self, c.name, id)
  end
  self.stats.triggered = self.stats.triggered + #ids
  return #ids, skipped
end

--- Fire pipeline c's trigger of kind for key (once ever: store:trigger_fire)
-- with params (name -> value, over the defaults) and options (recorded
-- with the run). Call inside a transaction. Returns the run id, or nil
-- when the key fired before.
function Service:fire_key(c, kind, key, params, options)
  local resolved, perr = pipeline.resolve_params(c.P, params)
  if not resolved then
    self.log(format("weir serve: %s trigger of %s cannot fire: %s", kind, c.name, perr))
    return nil
  end
  local row = queued_row(c, json.encode(resolved), json.encode(options), self.now())
  if not self.store:trigger_fire(c.pipeline_id, kind, key, row, self.now()) then return nil end
  -- queued once the transaction commits (weir.triggers.tick)
  self.fired_keys = self.fired_keys or {}
  self.fired_keys[#self.fired_keys + 1] = { c.name, row.id }
  return row.id
end

--- Whether pipeline c is paused (its schedule and triggers fire nothing).
function Service:trigger_paused(c)
  return self.store:schedule_state(c.pipeline_id, self.now()).paused
end

--- Fire what the triggers have due (weir.triggers); soon: a run just
-- ended, look now.
function Service:tick_triggers(soon)
  self.next_trigger = triggers.tick(self, self.now(), soon)
  local fired = self.fired_keys
  if fired then
    self.fired_keys = nil
    for _, f in ipairs(fired) do enqueue(self, f[1], f[2]) end
    self.stats.triggered = self.stats.triggered + #fired
  end
end

--- Fire what the schedules have due; remember when to look again.
function Service:tick_schedules()
  local now = self.now()
  if now < (self.next_schedule or 0) then return end
  local store = self.store
  local nxt = now + 60000
  for _, c in pairs(self.catalog) do
    local sched = c.P.schedule
    if sched then
      store:begin()
      local ok, err = pcall(function()
        local st = store:schedule_state(c.pipeline_id, now)
        if st.paused then return end
        local fires, skip_to, after = scheduler.plan(sched, st, now, c.name)
        if #fires > 0 then
          local n, ferr = self:fire_times(c, fires, "schedule", false, { trigger = "schedule" })
          if not n then
            self.log(format("weir serve: schedule of %s cannot fire: %s", c.name, ferr))
          end
        end
        if skip_to then store:schedule_skip(c.pipeline_id, skip_to) end
        if after and after < nxt then nxt = after end
      end)
      if ok then store:commit() else
        pcall(store.rollback, store)
        self.log(format("weir serve: schedule of %s: %s", c.name, tostring(err)))
      end
    end
  end
  self.next_schedule = nxt
end

--- Forget idempotency keys older than serve.idempotency_retention, and
-- webhook signatures older than the longest window (1 day).
function Service:prune()
  local store = self.store
  local ok = pcall(function()
    store:begin()
    store:idem_prune(executor.now() - self.settings.idempotency_retention * 1000)
    store:hook_prune(executor.now() / 1000 - 86400)
    store:commit()
  end)
  if not ok then pcall(store.rollback, store) end
  if self.lineage then self.lineage:report(store, executor.now()) end
end

--- The secret of a pipeline's webhook (its reference ${env:NAME} or
-- ${file:PATH}, PATH relative to weir.yaml's folder and inside a folder
-- of WEIR_SECRET_DIRS: the pipelines folders are tasks' to read), or nil,
-- message.
function Service:hook_secret(ref)
  return require("weir.config").secret_value(
    ref, util.dirname(pipeline.abspath(self.conf.cfg.file or "weir.yaml")))
end

--- The verifier of pipeline name's webhook (its window), remembering
-- accepted signatures in the store too, so a replay is refused across
-- restarts and servers.
function Service:hook_verifier(name, wh)
  self.verifiers = self.verifiers or {}
  local key = name .. "\0" .. tostring(wh.window)
  local v = self.verifiers[key]
  if not v then
    local store = self.store
    v = require("weir.hooks").verifier({
      window = wh.window,
      claim = function(sigs, t) return store:hook_claim(name, sigs, t) end,
    })
    self.verifiers[key] = v
  end
  return v
end

--- Open everything: configuration, store, pools, pipelines, HTTP. Returns
-- true, or nil, { exit, message }.
function Service:open()
  local o = self.o
  executor.signal_install()
  local conf, cerr = run.config(o.config, self.log)
  if not conf then return nil, { exit = 1, message = cerr } end
  self.conf = conf
  local sv = {}
  for k, v in pairs(conf.cfg.serve) do sv[k] = v end
  if o.listen then sv.listen = o.listen end
  if o.workers then sv.workers = o.workers end
  self.settings = sv
  local addr, port = require("weir.config").parse_listen(sv.listen)
  if not addr then
    return nil, { exit = 2, message = format("--listen: expected ADDR:PORT or [IPv6]:PORT, got %q",
                                            sv.listen) }
  end
  local store, serr = run.open_store(conf)
  if not store then return nil, { exit = 3, message = serr } end
  self.store = store
  store:background_checkpoints()
  local okr, why = pcall(store.reachable_by, store, conf.connections)
  if not okr then return nil, { exit = 3, message = "cannot open the metadata store: " .. tostring(why) } end
  if why then return nil, { exit = 1, message = conf.redact(why) } end
  local loopback = addr:match("^127%.") or addr == "::1"
  if not loopback and store:principals() == 0 then
    return nil, { exit = 2, message = format("weir serve: refusing to listen on %s with no user "
                                             .. "or API key (weir users add, weir keys create); "
                                             .. "without them only a loopback address is allowed",
                                             sv.listen) }
  end
  if #conf.cfg.pipelines == 0 then
    self.log("weir serve: no pipelines folder in " .. tostring(conf.cfg.file or "weir.yaml")
             .. " (pipelines: [dir, ...]); only uploaded pipelines can run")
  end
  -- the pools: one for runs, one worker for definitions (a Lua pipeline
  -- file is evaluated by a worker)
  local files = pipeline_files(conf.cfg.pipelines)
  local roots = {}
  for _, d in ipairs(conf.cfg.pipelines) do
    for _, r in ipairs(run.roots_for(pipeline.abspath(d))) do roots[#roots + 1] = r end
  end
  local err
  self.defexec, err = run.new_exec(1, roots, conf, files)
  if not self.defexec then return nil, { exit = 3, message = "cannot start workers: " .. tostring(err) } end
  self.exec, err = run.new_exec(sv.workers, roots, conf, files)
  if not self.exec then return nil, { exit = 3, message = "cannot start workers: " .. tostring(err) } end
  local ol = conf.cfg.openlineage
  self.lineage = ol and require("weir.openlineage").new(ol, { redact = conf.redact, live = true })
  self.runner = runner_mod.new({
    exec = self.exec, store = store, lineage = self.lineage, project_dir = conf.project,
    on_finish = function(e, status)
      local f = self.stats.finished
      f[status] = (f[status] or 0) + 1
      M.observe(self.stats.run_seconds, (executor.mono() - e.started) / 1000)
      batch_active(self, e.run_id, -1)
      self:notify(e.run_id)
    end,
  })
  self:load_pipelines()
  self:recover()
  local http = require("weir.http")
  local srv, herr = http.new({ address = addr, port = port, max_body_bytes = sv.max_body,
                               max_header_bytes = sv.max_header, threads = 1,
                               max_connections = sv.max_connections,
                               max_per_address = sv.max_connections_per_address,
                               timeout = math.max(1, math.floor(sv.idle_timeout)),
                               request_timeout = 330,
                               tls_cert = sv.tls and sv.tls.cert, tls_key = sv.tls and sv.tls.key })
  if not srv then
    return nil, { exit = 3, message = format("weir serve: cannot listen on %s: %s", sv.listen,
                                             tostring(herr)) }
  end
  self.http = srv
  self.exec:watch(srv:fd())
  self.api = require("weir.api").new(self)
  return true
end

--- Serve until SIGTERM/SIGINT and the drain. Returns the exit code.
function Service:loop()
  local r, exec, http, api = self.runner, self.exec, self.http, self.api
  local evs = {}
  while true do
    local signal
    for _, ev in ipairs(evs) do
      if ev.kind == "signal" then signal = ev.status end
    end
    if signal == 1 then
      self:load_pipelines()
      signal = nil
    end
    if signal and not self.drain_until then
      self.draining = true
      self.drain_until = executor.mono() + self.settings.drain * 1000
      self.log(format("weir serve: signal %d: no new runs; draining %d active runs for up to %s",
                      signal, r.active, util.human_duration(self.settings.drain)))
    end
    local sends = r:step(evs)
    for k = 1, #sends do
      local j = sends[k]
      local ok, err = exec:sendv(j[1], j[2], j[3], j[4])
      if not ok then error("executor: " .. tostring(err), 0) end
    end
    local answered = api:serve_pending(http)
    if not self.draining then
      self:tick_schedules()
      self:tick_triggers(#self.ended > 0)
      self:admit()
    end
    -- what the step and the requests committed: events, waiting answers
    if #self.pending > 0 or #self.ended > 0 then
      local ended = self.ended
      self.ended = {}
      self:flush_events(ended)
    end
    expire_waiters(self)
    if executor.mono() >= (self.next_prune or 0) then
      self.next_prune = executor.mono() + 60000
      self:prune()
    end
    if self.draining and (r.active == 0 or executor.mono() >= self.drain_until) then break end
    local perr
    -- requests left waiting: look at the workers without sleeping
    evs, perr = exec:poll(answered >= 64 and 0 or next_wait(self, r:wait_ms()))
    if not evs then error("executor: " .. tostring(perr), 0) end
    if r:gather(#evs) then
      local more = exec:poll(1)
      if more then for k = 1, #more do evs[#evs + 1] = more[k] end end
    end
  end
  if r.active > 0 then
    self.log(format("weir serve: stopped with %d runs active; the next start resumes them",
                    r.active))
  end
  return 0
end

function Service:close()
  if self.lineage and self.store then
    self.lineage:flush()
    self.lineage:report(self.store, executor.now())
    self.lineage = nil
  end
  if self.http then self.http:close(); self.http = nil end
  if self.exec then self.exec:close(); self.exec = nil end
  if self.defexec then self.defexec:close(); self.defexec = nil end
  if self.store then self.store:close(); self.store = nil end
end

--- weir serve: open, loop, close. Returns the exit code.
function M.main(o)
  local s = M.new(o)
  local ok, err = s:open()
  if not ok then
    s:close()
    io.stderr:write(err.message, "\n")
    return err.exit
  end
  local addr = require("weir.config").parse_listen(s.settings.listen)
  s.log(format("weir serve: listening on %s:%d (%d workers, %d pipelines)",
               addr:find(":") and "[" .. addr .. "]" or addr, s.http:port(), s.exec.n,
               util.count(s.catalog)))
  local okl, code = pcall(s.loop, s)
  s:close()
  if not okl then
    io.stderr:write("weir serve: ", tostring(code), "\n")
    return 3
  end
  return code
end

return M
