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

local home_dir, project

--- Where this command works: the project. o: file (a pipeline file, so
-- weir.yaml is looked for next to it and upwards), config (--config).
-- Its configuration is --config, else WEIR_CONFIG, else the nearest
-- weir.yaml (weir.config's find); its root is that file's folder, else
-- the pipeline's folder, else (no file) the nearest folder from here up
-- that holds a .weir, else the current one. Returns { root, config (the
-- file or nil), searched (where weir.yaml was looked for) }, or nil,
-- message when --config or WEIR_CONFIG is not a readable file. The
-- latest call decides what M.home and M.config use.
function M.locate(o)
  o = o or {}
  local search = o.file and util.dirname(pipeline.abspath(o.file)) or nil
  local path, err, searched = require("weir.config").find({ path = o.config, search = search })
  if err then return nil, err end
  local root = path and util.dirname(pipeline.abspath(path)) or search
  if not root then
    local F = require("weir._ffi")
    for _, d in ipairs(searched or {}) do
      if F.C.weir_ffi_path_kind(util.join(d, ".weir")) == F.C.WEIR_KIND_DIR then
        root = d
        break
      end
    end
  end
  project = { root = root or pipeline.abspath("."), config = path, searched = searched,
              file = o.file,
              dir = search or pipeline.abspath(".") }
  home_dir = nil
  return project
end

--- The project M.locate found last (nil before).
function M.project() return project end

local function located()
  return project or M.locate() or { root = pipeline.abspath("."), dir = pipeline.abspath(".") }
end

--- WEIR_HOME, else .weir in the project's root (M.locate), created if
-- missing.
function M.home()
  if home_dir then return home_dir end
  local h = os.getenv("WEIR_HOME")
  if not h or h == "" then h = util.join(located().root, ".weir") end
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
    local p = located().config
    local ok, c = pcall(require("weir.config").load, p)
    cfg = ok and p and c or nil
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

--- The configuration (path: --config; else the project's, M.locate): its connections
-- for the workers (host names resolved here, so workers never need DNS;
-- hostaddr is what they connect to), the endpoints workers may reach, the
-- breaker table, the libraries workers preload, and the redaction of its
-- secrets. warn(message) hears about weak secrets. Returns conf, or nil,
-- message (every error of the file, one per line).
function M.config(path, warn)
  local config = require("weir.config")
  local pr = project
  if not pr or path then
    local perr
    pr, perr = M.locate({ config = path, file = pr and pr.file })
    if not pr then return nil, "weir: " .. tostring(perr) end
  end
  local cfg, errs = config.load(pr.config)
  if not cfg then
    if type(errs) == "table" then return nil, concat(errs, "\n") end
    return nil, "weir: " .. tostring(errs)
  end
  if not pr.config then cfg.searched = pr.searched end
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
  -- dataset paths are named relative to weir.yaml's folder, else the
  -- working folder (docs/adr/0030)
  return { cfg = cfg, connections = conns, endpoints = endpoints, breaker_fd = fd,
           breakers = names, project = cfg.dir or pipeline.abspath("."),
           where = config.where(cfg),
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
  local yaml = cfg.file or util.join(located().dir, "weir.yaml")
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
-- given on the command line), workers, only / from (task names), inputs
-- (task name -> its output as JSON text: what the tasks --only or --from
-- leave out give their dependants), config (weir.yaml path),
-- warn(message). Nothing happens before prepare().
function M.new(o)
  return setmetatable({ o = o, file = o.file, warn = o.warn }, Run)
end

--- Take over an interrupted run (weir resume), or run again what failed
-- or what is named (weir retry). o: workers, config, warn, force (take
-- the run over even when its recorded supervisor looks alive), reload
-- (the pipeline file as it is now, recorded as a new version of the
-- run), tasks (names: run these again and what follows them, even in a
-- run that succeeded), notice(message) hears what the user should know
-- (the stored version is used though the file changed...).
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

--- The connections P names in its Lua source (ctx.source("NAME") and
-- ctx.sink("NAME") with a literal name) that conf (M.config) does not
-- have: a list of { file, line, message }, or nil when there is none.
-- conf: { cfg = a loaded weir.config, connections = its connections }.
function M.check_connections(P, conf)
  if P.kind ~= "lua" or type(P.source) ~= "string" then return nil end
  local out, n = {}, 0
  for line in (P.source .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    -- a comment does not count
    line = line:gsub("%-%-.*$", "")
    for what, name in line:gmatch("ctx%.(%a+)%(%s*[\"']([^\"']*)[\"']") do
      if (what == "source" or what == "sink") and not conf.connections[name] then
        local _, why = conf.cfg:connection(name)
        out[#out + 1] = { file = P.file, line = n, message = format("ctx.%s: %s", what, why) }
      end
    end
  end
  return #out > 0 and out or nil
end

-- The connections P names that conf lacks, one "FILE:LINE: message" line
-- each, or nil.
local function unknown_connections(P, conf)
  local bad = M.check_connections(P, conf)
  if not bad then return nil end
  local lines = {}
  for k, b in ipairs(bad) do lines[k] = format("%s:%d: %s", b.file, b.line, b.message) end
  return concat(lines, "\n")
end

local function prepare_new(self)
  local o = self.o
  local P, err = define(self, self.file, o.workers)
  if not P then return nil, err end
  local bad = unknown_connections(P, self.conf)
  if bad then return fail_list(1, bad) end
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
function M.claim(store, id, force, again)
  store:begin()
  local okr, run = pcall(store.run, store, id)
  if not okr then
    pcall(store.rollback, store)
    return fail(3, "cannot claim run %s: %s", id, tostring(run))
  end
  if not run then store:rollback(); return fail(3, "no run %q", id) end
  if run.status == "success" and not again then
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

--- The run text names: "last" (the newest run), a run id, or a prefix
-- of exactly one run id. Returns the run row, or nil, message.
function M.find_run(store, text)
  if text == "last" then
    local r = store:runs(1)[1]
    if not r then return nil, "no runs yet" end
    return r
  end
  local r = store:run(text)
  if r then return r end
  local ids = #text >= 4 and store:run_ids_with_prefix(text) or {}
  if #ids == 1 then return store:run(ids[1]) end
  if #ids > 1 then
    return nil, format("run id prefix %q is ambiguous (%s, %s%s)", text, ids[1], ids[2],
                       #ids > 2 and ", ..." or "")
  end
  return nil, format("no run %q%s", text, #text < 4 and " (a prefix needs 4 characters or "
                                      .. "more)" or "")
end

local function prepare_resume(self)
  local store, o = self.store, self.o
  local row, ferr = M.find_run(store, self.id)
  if not row then return fail(3, ferr) end
  self.id = row.id
  if row.status == "success" and not o.tasks then
    return fail(0, "run %s already succeeded%s", row.id,
                o.retry and " (weir retry --task TASK runs a task again)" or "")
  end
  local v = store:version(row.version_id)
  -- the source stored with the run's version, unless --reload: the file
  -- as it is now (said plainly when they differ)
  local now_src, rerr = pipeline.read(v.path)
  local source = v.source
  if o.reload then
    if not now_src then return fail(1, "--reload: cannot read %s: %s", v.path, tostring(rerr)) end
    source = now_src
  elseif now_src and pipeline.sha256(now_src) ~= v.hash and o.notice then
    o.notice(format("weir: %s changed since run %s stored it; the stored version is used "
                    .. "(weir retry %s --reload runs the file as it is now)", v.path, row.id,
                    row.id))
  end
  executor.signal_install()
  local options = json.decode(row.options) or {}
  local P, err = define(self, v.path, o.workers or options.workers, source, v.kind)
  if not P then return nil, err end
  if P.name ~= row.pipeline then
    return fail(1, "%s now defines pipeline %q, not %q: a run keeps its pipeline", v.path,
                P.name, row.pipeline)
  end
  for _, name in ipairs(o.tasks or {}) do
    if not P.tasks[name] then
      local names = {}
      for n in pairs(P.tasks) do names[#names + 1] = n end
      table.sort(names)
      return fail(2, "--task: no task %q in %s (it has %s)", name, row.pipeline,
                  concat(names, ", "))
    end
  end
  local bad = unknown_connections(P, self.conf)
  if bad then return fail_list(1, bad) end
  local run, cerr = M.claim(store, row.id, o.force, o.tasks ~= nil)
  if not run then return nil, cerr end
  if o.reload and P.hash ~= v.hash then
    local now = executor.now()
    local vid = store:pipeline_version(P.name, P.kind, P.path, P.source, P.hash, now)
    store:begin()
    store:add_run_version(run.id, vid, now, run.version_id, run.created_at)
    store:commit()
    local n = #store:run_versions(run.id)
    if o.notice then
      o.notice(format("weir: run %s now runs version %d of %s (%s)", run.id, n, v.path,
                      P.hash:sub(1, 12)))
    end
  elseif o.reload and o.notice then
    o.notice(format("weir: %s has not changed since run %s stored it", v.path, run.id))
  end
  self.only, self.from = options.only, options.from
  self.params = json.decode(run.params)
  self.rerun = o.tasks
  self.active_base = M.active_ms(store, run)
  M.mark_lost(store, run.id)
  return true
end

--- The working time of run so far (ms): recorded when a session ended;
-- else from its start to the last moment an attempt of it was seen (a
-- killed supervisor records no end), so idle gaps between sessions do
-- not count.
function M.active_ms(store, run)
  if run.active_ms then return run.active_ms end
  if not run.started_at then return 0 end
  local last = run.finished_at or run.started_at
  for _, a in ipairs(store:attempts(run.id)) do
    last = math.max(last, a.finished_at or a.started_at or last)
  end
  return last - run.started_at
end

--- Everything before the engine: configuration, the store (checked
-- against weir.yaml's connections before any worker starts), workers, the
-- definition phase and validation, parameters, and the run recorded in
-- the store (a new run) or claimed (a resumed one). Returns true, or nil,
-- err.
function Run:prepare()
  if not self.resumed then executor.signal_install() end
  local pr, perr = M.locate({ file = self.file, config = self.o.config })
  if not pr then return fail(1, "weir: %s", perr) end
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
  local ol = conf.cfg.openlineage
  local exporter = ol and require("weir.openlineage").new(ol, { redact = conf.redact })
  local ok, status, e = pcall(engine.run, {
    P = self.P, store = self.store, exec = self.exec, run_id = self.id,
    params = self.params, roots = M.roots_for(self.P.base_dir),
    resume = self.resumed, resume_tasks = self.resumed and self.store:tasks(self.id) or nil,
    rerun = self.rerun, active_base = self.active_base,
    only = self.only, from = self.from, view = view, inputs = self.o and self.o.inputs,
    connections = conf.connections, redact = conf.redact, config_where = conf.where,
    lineage = exporter, project_dir = conf.project,
  })
  self.exec:close()
  self.exec = nil
  if exporter then
    -- the run is over (or stopped): what the export still holds goes
    -- now, within its flush_timeout; never an error of the run's
    exporter:flush()
    exporter:report(self.store, executor.now())
    self.export_summary = exporter:summary()
  end
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
