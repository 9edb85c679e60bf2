-- weir.runner: many runs over one worker pool (weir serve).
--
-- Each run is a weir.engine; the runner owns the shared pool (engine.pool)
-- and does what Engine:step does for one run, for all of them in one
-- store transaction: apply the executor's events to the runs they
-- concern, kill overdue workers, requeue due retries, dispatch ready
-- tasks fairly (pipelines take turns, then the runs of a pipeline), then
-- finish the runs that are over. Admission (how many runs are active) is
-- the caller's (weir.serve): add() starts a run, cancel() stops one.
-- Like the engine it never polls by itself: the loop of weir.serve turns it, and a
-- test drives it with the fakes. docs/adr/0019.
local engine = require("weir.engine")
local ipairs, min, max = ipairs, math.min, math.max

local M = {}
local R = {}
R.__index = R

--- o: exec, store, clock (now, mono; default the executor's), on_finish
-- (function(engine, status), called after a run's final status is
-- recorded), interval (longest poll, ms; default 1000), lineage (a
-- weir.openlineage exporter every run reports to) and project_dir (for
-- dataset names), both optional.
function M.new(o)
  local clock = o.clock or require("weir.executor")
  return setmetatable({
    pool = engine.pool(o.exec, { shared = true, clock = clock, prefetch = o.prefetch }),
    store = o.store, clock = clock, exec = o.exec, on_finish = o.on_finish,
    interval = o.interval or 1000, lineage = o.lineage, project_dir = o.project_dir,
    runs = {},      -- run id -> engine
    active = 0,
    groups = {},    -- dispatch groups: one per pipeline name, its engines
    group_of = {},  -- pipeline name -> group
  }, R)
end

--- Start a run: o as engine.new's (P, run_id, params, roots,
-- connections, redact, resume, resume_tasks, only, from, view), over the
-- shared pool. Records its start (one transaction). Returns the engine.
function R:add(o)
  o.pool, o.store, o.clock = self.pool, self.store, o.clock or self.clock
  o.lineage, o.project_dir = o.lineage or self.lineage, o.project_dir or self.project_dir
  local e = engine.new(o)
  e:start()
  self.runs[e.run_id] = e
  self.active = self.active + 1
  local name = e.P.name
  local g = self.group_of[name]
  if not g then
    g = { k = 1, name = name }
    self.group_of[name] = g
    self.groups[#self.groups + 1] = g
  end
  g[#g + 1] = e
  return e
end

--- The active runs of pipeline name.
function R:count(name)
  local g = self.group_of[name]
  return g and #g or 0
end

--- Cancel run id (a text saying why, e.g. "cancelled by alice"). Returns
-- false when the run is not active here.
function R:cancel(id, why)
  local e = self.runs[id]
  if not e or e.cancelled_by then return e ~= nil end
  self.store:begin()
  engine.cancel(e, why)
  self.store:commit()
  return true
end

local function drop(self, e)
  self.runs[e.run_id] = nil
  self.active = self.active - 1
  local name = e.P.name
  local g = self.group_of[name]
  for i = 1, #g do
    if g[i] == e then table.remove(g, i); break end
  end
  if g.k > #g then g.k = 1 end
  if #g == 0 then
    self.group_of[name] = nil
    for i = 1, #self.groups do
      if self.groups[i] == g then table.remove(self.groups, i); break end
    end
  end
end

--- One step for every run (what Engine:step is for one). A signal
-- event is not the runner's: weir.serve reads them from the events it
-- passes (and drains), so they are ignored here, like wake events.
function R:step(evs)
  local store, pool = self.store, self.pool
  store:begin()
  local handle = engine.handle
  for _, ev in ipairs(evs) do
    local h = handle[ev.kind]
    if h then h(pool, ev) end
  end
  local tnow = self.clock.mono()
  engine.kill_overdue(pool, tnow)
  local sends = {}
  for _, e in pairs(self.runs) do
    if not e.cancelled_by then engine.due_retries(e, tnow) end
  end
  if #self.groups > 0 then engine.dispatch(pool, self.groups, tnow, sends) end
  store:commit()
  if self.lineage then self.lineage:tick() end
  -- the runs that are over: their final status, each in its transaction
  local over
  for _, e in pairs(self.runs) do
    if e:done() then
      over = over or {}
      over[#over + 1] = e
    end
  end
  if over then
    -- their final statuses in one transaction; then, now and then, the
    -- store's WAL folded back (Engine:finish does it after weir run)
    table.sort(over, function(a, b) return a.run_id < b.run_id end)
    store:begin()
    for _, e in ipairs(over) do
      drop(self, e)
      e:finish()
    end
    store:commit()
    if self.on_finish then
      for _, e in ipairs(over) do self.on_finish(e, e.status) end
    end
    local now = self.clock.mono()
    if now >= (self.next_checkpoint or 0) then
      self.next_checkpoint = now + 5000
      store:checkpoint()
    end
  end
  return sends
end

function R:wait_ms()
  local tnow = self.clock.mono()
  local wait = engine.pool_wait(self.pool, tnow, self.interval)
  for _, e in pairs(self.runs) do
    if not e.cancelled_by then wait = e:retry_wait(tnow, wait) end
  end
  return max(0, math.ceil(min(wait, self.interval)))
end

function R:gather(nev)
  return engine.pool_gather(self.pool, nev)
end

return M
