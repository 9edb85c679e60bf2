-- weir.run: one run of a pipeline, from its configuration to its final
-- status. The run object owns what a run needs, in order: the
-- configuration (weir.yaml: connections resolved for the workers,
-- breakers, redaction), the store (checked against those connections),
-- the worker pool, the definition phase and the validation of the
-- pipeline, its parameters, the store record, the engine, the final
-- status (or the record of why the run stopped) and resume. The command
-- line only parses arguments and prints; a service can hold many of
-- these.
--
--   local r = run.new({ file = "p.lua", params = { day = "2026-01-01" } })
--   local ok, err = r:prepare()   -- err: { exit = N, message = text }
--   local status = r:execute(view)
--   r:close()
--
-- Every failure comes back as nil, err with err.exit the exit code the
-- command line uses (1 invalid pipeline or configuration, 2 bad request,
-- 3 store, run or workers not available, 130/143 interrupted),
-- err.message the text to show (one or more lines, no secret) and
-- err.located when each line already names its file.
local pipeline = require("weir.pipeline")
local executor = require("weir.executor")
local engine = require("weir.engine")
local json = require("weir.json")
local util = require("weir.util")
local format, concat = string.format, table.concat

local M = {}

local Run = {}
Run.__index = Run

-- The identity of process pid (boot and start time: a reused pid has
-- another), or nil when there is no such process.
local function identity(pid)
  local F = require("weir._ffi")
  local buf = F.ffi.new("char[128]")
  if F.C.weir_ffi_proc_identity(pid, buf, 128) ~= 0 then return nil end
  return F.ffi.string(buf)
end
M.identity = identity

--- Whether the supervisor a run records is alive: its pid is, and is the
-- same process (a pid reused since, or from another boot, is not). This
-- process counts as not alive (it is taking the run over).
function M.supervisor_alive(run)
  local sp = run.supervisor_pid
  return sp ~= nil and sp ~= executor.getpid() and executor.pid_alive(sp)
         and (run.supervisor_id == nil or run.supervisor_id == identity(sp))
end

--- Whether a run was interrupted: recorded running, its supervisor gone
-- (killed, or stopped because the store could not be written).
function M.interrupted(run)
  return run.status == "running" and not M.supervisor_alive(run)
end

local function fail(exit, message, ...)
  return nil, { exit = exit, message = select("#", ...) > 0 and format(message, ...) or message }
end

-- errors of a file, each line already says where (file:line: path: ...)
local function fail_list(exit, text)
  return nil, { exit = exit, message = text, located = true }
end

local home_dir
--- WEIR_HOME (default ./.weir), created if missing.
function M.home()
  if home_dir then return home_dir end
  local h = os.getenv("WEIR_HOME")
  if not h or h == "" then h = ".weir" end
  -- mkdir -p, without a shell (trusted side: the calls go straight to the
  -- OS); the home itself is made for its owner only (0700)
  local F = require("weir._ffi")
  local abs = pipeline.abspath(h)
  local acc = ""
  for part in util.dirname(abs):gmatch("[^/]+") do
    acc = acc .. "/" .. part
    F.C.weir_ffi_file_mkdir(acc, F.errbuf, F.errlen)
  end
  F.C.weir_ffi_private_dir(abs, F.errbuf, F.errlen)
  home_dir = h
  return h
end

--- The metadata store's URL: WEIR_METADATA_URL when set and not empty,
-- else weir.yaml's metadata_url (conf, or the weir.yaml found here), else
-- nil (WEIR_HOME/weir.db).
local function store_url(conf)
  local url = os.getenv("WEIR_METADATA_URL")
  if url and url ~= "" then return url end
  local cfg = conf and conf.cfg
  if not conf then
    local ok, c = pcall(require("weir.config").open, {})
    cfg = ok and c or nil
  end
  return cfg and cfg.metadata_url
end
M.store_url = store_url

--- The store of store_url(conf), else WEIR_HOME/weir.db. Returns the
-- store, or nil, message.
function M.open_store(conf)
  local store, err = require("weir.store").open(M.home(), store_url(conf))
  if not store then return nil, "cannot open the metadata store: " .. tostring(err) end
  return store
end

--- weir.yaml (path, else WEIR_CONFIG, else ./weir.yaml): its connections
-- for the workers (host names resolved here, so workers never need DNS;
-- hostaddr is what they connect to), the endpoints workers may reach, the
-- breaker table, the libraries workers preload, and the redaction of its
-- secrets. warn(message) hears about weak secrets. Returns conf, or nil,
-- message (every error of the file, one per line).
function M.config(path, warn)
  local config = require("weir.config")
  local cfg, errs = config.open({ path = path })
  if not cfg then
    if type(errs) == "table" then return nil, concat(errs, "\n") end
    return nil, "weir: " .. tostring(errs)
  end
  local F = require("weir._ffi")
  local buf = F.ffi.new("char[1024]")
  local conns, endpoints = {}, {}
  for name, c in pairs(cfg.connections or {}) do
    local copy = {}
    for k, v in pairs(c) do copy[k] = v end
    local rc = F.C.weir_ffi_net_resolve(c.host, c.port, buf, 1024, F.errbuf, F.errlen)
    if rc == 0 then
      local first
      for ep in F.ffi.string(buf):gmatch("[^\n]+") do
        endpoints[#endpoints + 1] = ep
        first = first or ep:match("^%[(.*)%]:%d+$") or ep:match("^(.*):%d+$")
      end
      copy.hostaddr = first
    else
      -- left unresolved: the connection fails in the task, with this reason
      copy.hostaddr = nil
      copy.resolve_error = F.errmsg()
    end
    conns[name] = copy
  end
  -- workers get the table read-only: their changes go through the broker,
  -- for the breakers of these connections only
  local breaker = require("weir.breaker")
  local fd = breaker.open(pipeline.abspath(M.home()) .. "/breakers") and breaker.reader()
  -- workers load what a connector needs (libpq) before their seccomp
  -- filter only when some connection may need it
  local preload = 0
  for _, c in pairs(conns) do
    preload = bit.bor(preload, require("weir.connectors").get(c.type).preload or 0)
  end
  for _, sec in ipairs(config.secrets(cfg)) do
    if #sec < 4 and warn then
      warn(format("weir: warning: a secret of %s is shorter than 4 characters; every "
                  .. "occurrence of it in errors, logs and outputs will show as ***",
                  cfg.file or "weir.yaml"))
    end
  end
  local names = {}
  for name in pairs(conns) do names[#names + 1] = name end
  return { cfg = cfg, connections = conns, endpoints = endpoints, breaker_fd = fd,
           breakers = names,
           preload = preload, redact = config.redactor(cfg) }
end

-- The folders tasks may reach: the pipeline's own and WEIR_ROOTS.
function M.roots_for(dir)
  local roots = { dir }
  for r in (os.getenv("WEIR_ROOTS") or ""):gmatch("[^:]+") do
    roots[#roots + 1] = pipeline.abspath(r)
  end
  return roots
end

-- What tasks may not touch (docs/adr/0013): weir's home, a sqlite:
-- store's folder and WEIR_SECRET_DIRS (folders); weir.yaml (the one in
-- use, else where the next run would look for one) and every ${file:} it
-- read (hidden: neither read nor written); weir.lock beside it and the
-- pipeline file path (not written).
local function off_limits(conf, path)
  local deny = { pipeline.abspath(M.home()) }
  local url = store_url(conf)
  local db = url and url:match("^sqlite:(.+)$")
  if db then deny[#deny + 1] = util.dirname(pipeline.abspath(db)) end
  local F = require("weir._ffi")
  for d in (os.getenv("WEIR_SECRET_DIRS") or ""):gmatch("[^:]+") do
    d = pipeline.abspath(d)
    if F.C.weir_ffi_path_kind(d) == F.C.WEIR_KIND_DIR then deny[#deny + 1] = d end
  end
  local cfg = conf.cfg
  local yaml = pipeline.abspath(cfg.file or "weir.yaml")
  local hide = { yaml }
  for _, f in ipairs(cfg.secret_files) do hide[#hide + 1] = f end
  local protect = { util.join(util.dirname(yaml), "weir.lock") }
  for _, p in ipairs(type(path) == "table" and path or { path }) do
    protect[#protect + 1] = pipeline.abspath(p)
  end
  return deny, hide, protect
end

--- The worker pool of a run; path: the pipeline file (or a list of
-- them), when there is one.
function M.new_exec(workers, roots, conf, path)
  local as, aerr = util.size(os.getenv("WEIR_WORKER_AS") or "4GB")
  if not as then return nil, "WEIR_WORKER_AS: " .. aerr end
  local deny, hide, protect = off_limits(conf, path)
  -- what killed supervisors of this home left half-written goes first
  -- (ADR 16); a folder that cannot be read leaves them, nothing fails
  local temps = pipeline.abspath(M.home()) .. "/temps"
  executor.sweep_temps(temps)
  return executor.new({
    workers = workers or require("weir._ffi").C.weir_ffi_ncpu(), roots = roots, deny = deny,
    hide = hide, protect = protect,
    user = os.getenv("WEIR_WORKER_USER"),
    endpoints = conf.endpoints, shared_fd = conf.breaker_fd, breakers = conf.breakers,
    preload = conf.preload, temps = temps,
    -- the Lua cap does not see C-side buffers: bound the whole process too
    rlimit_as = as,
  })
end

--- A new run of the pipeline in o.file. o: params (name -> string, as
-- given on the command line), workers, only / from (task names), config
-- (weir.yaml path), warn(message). Nothing happens before prepare().
function M.new(o)
  return setmetatable({ o = o, file = o.file, warn = o.warn }, Run)
end

--- Take over an interrupted run (weir resume). o: workers, config, warn,
-- force (take the run over even when its recorded supervisor looks alive).
function M.resume(run_id, o)
  return setmetatable({ o = o, id = run_id, resumed = true, warn = o.warn }, Run)
end

-- Load the pipeline with the run's own pool (started first: a Lua file is
-- evaluated by a worker), from its file or a stored source.
local function define(self, path, workers, source, kind)
  local exec, err = M.new_exec(workers, M.roots_for(util.dirname(pipeline.abspath(path))),
                             self.conf, path)
  if not exec then return fail(3, "cannot start workers: %s", tostring(err)) end
  self.exec = exec
  local P, errs = pipeline.load(path, { exec = exec, source = source, kind = kind,
                                        catalog = function()
                                          return require("weir.templates").catalog(self.conf.cfg)
                                        end })
  if not P then
    local code = pipeline.interrupted and 128 + pipeline.interrupted or 1
    return fail_list(code, pipeline.format_errors(errs))
  end
  self.P = P
  return P
end

local function prepare_new(self)
  local o = self.o
  local P, err = define(self, self.file, o.workers)
  if not P then return nil, err end
  for _, flag in ipairs({ "only", "from" }) do
    if o[flag] and not P.tasks[o[flag]] then
      return fail(2, "--%s: unknown task %q", flag, o[flag])
    end
  end
  local params, perr = pipeline.resolve_params(P, o.params)
  if not params then return fail(2, perr) end
  self.params = params
  local store = self.store
  local now = executor.now()
  local vid, pid = store:pipeline_version(P.name, P.kind, P.path, P.source, P.hash, now)
  self.id = engine.new_run_id()
  self.only, self.from = o.only, o.from
  store:begin()
  store:create_run({ id = self.id, pipeline_id = pid, version_id = vid, status = "queued",
                     params = json.encode(params), created_at = now,
                     options = json.encode({ workers = o.workers, only = o.only,
                                             from = o.from }),
                     supervisor_pid = executor.getpid(),
                     supervisor_id = identity(executor.getpid()) })
  store:commit()
  return true
end

--- Claim interrupted run id for this process, checking and claiming in
-- one write transaction, so two supervisors cannot both take it over (on
-- PostgreSQL, a supervisor on another host holding the run refuses the
-- claim). force: even when its recorded supervisor looks alive. Returns
-- the run row, or nil, err.
function M.claim(store, id, force)
  store:begin()
  local okr, run = pcall(store.run, store, id)
  if not okr then
    pcall(store.rollback, store)
    return fail(3, "cannot claim run %s: %s", id, tostring(run))
  end
  if not run then store:rollback(); return fail(3, "no run %q", id) end
  if run.status == "success" then
    store:rollback()
    return fail(0, "run %s already succeeded", run.id)
  end
  if run.status == "running" and not force and M.supervisor_alive(run) then
    store:rollback()
    return fail(3, "run %s is still running (supervisor pid %d); if that process is not "
                .. "its supervisor, weir resume --force takes the run over", run.id,
                run.supervisor_pid)
  end
  local okc, cerr = pcall(function()
    store:update_run(run.id, { status = "running", supervisor_pid = executor.getpid(),
                               supervisor_id = identity(executor.getpid()) })
    store:commit()
  end)
  if not okc then
    pcall(store.rollback, store)
    return fail(3, "cannot claim run %s: %s", run.id, tostring(cerr))
  end
  return run
end

--- A claimed run's attempts that were running when its supervisor
-- stopped are lost.
function M.mark_lost(store, id)
  store:begin()
  for _, a in ipairs(store:attempts(id)) do
    if a.status == "running" then
      store:update_attempt(id, a.task, a.attempt, {
        status = "lost", error = "the supervisor stopped during this attempt",
        finished_at = executor.now() })
    end
  end
  store:commit()
end

local function prepare_resume(self)
  local store = self.store
  local run, cerr = M.claim(store, self.id, self.o.force)
  if not run then return nil, cerr end
  -- the source stored with the run's version, not the file as it is now
  local v = store:version(run.version_id)
  executor.signal_install()
  local options = json.decode(run.options) or {}
  local P, err = define(self, v.path, self.o.workers or options.workers, v.source, v.kind)
  if not P then return nil, err end
  self.only, self.from = options.only, options.from
  self.params = json.decode(run.params)
  M.mark_lost(store, run.id)
  return true
end

--- Everything before the engine: configuration, the store (checked
-- against weir.yaml's connections before any worker starts), workers, the
-- definition phase and validation, parameters, and the run recorded in
-- the store (a new run) or claimed (a resumed one). Returns true, or nil,
-- err.
function Run:prepare()
  if not self.resumed then executor.signal_install() end
  local conf, cerr = M.config(self.o.config, self.warn)
  if not conf then return fail_list(1, cerr) end
  self.conf = conf
  local store, serr = M.open_store(conf)
  if not store then return fail(3, serr) end
  self.store = store
  local okr, why = pcall(store.reachable_by, store, conf.connections)
  if not okr then return fail(3, "cannot open the metadata store: %s", tostring(why)) end
  if why then return fail(1, conf.redact(why)) end
  if self.resumed then return prepare_resume(self) end
  return prepare_new(self)
end

--- Run the engine to the run's end. view: weir.view callbacks (optional).
-- Returns the final status ("success", "failed" or "cancelled"; the
-- signal that cancelled it is self.cancelled_by), or nil, err when the
-- engine itself failed (a store that cannot be written, say): the run is
-- then left `running` as of its last committed step, with why in `error`
-- if the store takes it, for weir resume to finish.
function Run:execute(view)
  local conf = self.conf
  local ok, status, e = pcall(engine.run, {
    P = self.P, store = self.store, exec = self.exec, run_id = self.id,
    params = self.params, roots = M.roots_for(self.P.base_dir),
    resume = self.resumed, resume_tasks = self.resumed and self.store:tasks(self.id) or nil,
    only = self.only, from = self.from, view = view,
    connections = conf.connections, redact = conf.redact,
  })
  self.exec:close()
  self.exec = nil
  if not ok then
    -- the run stays as the last committed step left it, `running`, like a
    -- killed supervisor's (weir runs shows it interrupted), with why when
    -- the store takes it: weir resume finishes it
    local why = conf.redact(tostring(status))
    local store = self.store
    pcall(function()
      store:rollback()
      store:begin()
      store:update_run(self.id, { error = why })
      store:commit()
    end)
    return fail(3, "run %s stopped: %s; `weir resume %s` finishes it once that is fixed",
                self.id, why, self.id)
  end
  self.status, self.engine, self.cancelled_by = status, e, e.cancelled_by
  return status
end

--- The run's tasks as recorded (after execute).
function Run:tasks()
  return self.store:tasks(self.id)
end

--- Stop the workers and close the store (safe twice).
function Run:close()
  if self.exec then self.exec:close(); self.exec = nil end
  if self.store then self.store:close(); self.store = nil end
end

return M
