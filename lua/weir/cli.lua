-- weir.cli: the `weir` command line.
--
-- Exit codes: 0 success; 1 a run failed or a file is invalid; 2 usage
-- error; 3 the run or store could not be opened; 130 cancelled by SIGINT;
-- 143 cancelled by SIGTERM.
local pipeline = require("weir.pipeline")
local json = require("weir.json")
local util = require("weir.util")
local format, concat = string.format, table.concat

local M = {}

M.VERSION = "0.1.0"

-- The commands, in the order `weir help` lists them: one definition each
-- (weir.clidoc says what a definition holds). Usage lines, per-command
-- help, completion scripts and the man page are all made from these.
M.COMMANDS = {}
local function command(def)
  M.COMMANDS[#M.COMMANDS + 1] = def
  M.COMMANDS[def.name] = def
  return def
end
M.command = command

-- options several commands share
local OPT = {
  json = { name = "json", help = "print JSON (docs/cli.md gives its shape)" },
  config = { name = "config", arg = "FILE",
             help = "the configuration file (default: weir.yaml found next to the pipeline "
                    .. "or above it; also WEIR_CONFIG)" },
  workers = { name = "workers", arg = "N", number = true, min = 1, max = 256,
              help = "worker processes (default: the number of CPUs)" },
  log_format = { name = "log-format", arg = "FORMAT", choices = { "text", "json" },
                 help = "text (default), or one JSON event per line on stderr" },
  server = { name = "server", arg = "URL",
             help = "weir serve's URL (default WEIR_SERVER; then the command asks the server)" },
  param = { name = "param", arg = "K=V", pairs = true,
            help = "a parameter of the pipeline (repeat for more; each name once)" },
  role = { name = "role", arg = "ROLE", choices = { "viewer", "operator", "developer", "admin" },
           help = "viewer, operator, developer or admin" },
  pipelines = { name = "pipelines", arg = "A,B",
                help = "only these pipelines (comma-separated; default: all)" },
}
M.OPT = OPT

-- The text of `weir help` after the command list.
M.TRAILER = [[
configuration:
  weir.yaml next to the pipeline file or in a folder above it (for commands
  without a file: the current folder or above), or --config FILE, or
  WEIR_CONFIG: the connections tasks reach with ctx.source/ctx.sink
  (docs/connectors.md)

environment:
  WEIR_CONFIG        the configuration file (instead of the weir.yaml found)
  WEIR_HOME          state folder (default .weir in the project root: the
                     folder of weir.yaml, else the pipeline's): weir.db
  WEIR_METADATA_URL  the metadata store: sqlite:PATH, or postgres://USER:PASSWORD@HOST:PORT/DB
                     (also metadata_url in weir.yaml; default WEIR_HOME/weir.db)
  WEIR_SYNC          full: fsync every commit (default: WAL, synchronous=NORMAL)
  WEIR_ROOTS         extra folders tasks may read and write (colon-separated);
                     the pipeline's own folder is always allowed
  WEIR_SECRET_DIRS   folders ${file:} in weir.yaml may read besides its own
                     (colon-separated); tasks can never reach them
  WEIR_WORKER_USER   user workers drop to when weir runs as root (nobody)
  WEIR_WORKER_AS     address-space limit of a worker (default 4GB)
  WEIR_LOAD_TIMEOUT  time limit to load a Lua pipeline file, in ms (10000)
  WEIR_SERVER        weir serve's URL for trigger, cancel, runs and show
                     (http(s)://HOST:PORT; --server overrides it)
  WEIR_SERVER_CA     CA certificates (PEM file) an https server is checked
                     against (default: the system's bundle)
  WEIR_TOKEN         the API key or token those commands send
  NO_COLOR           set and not empty: no colour (there is none off a terminal)

exit codes: 0 success, 1 run failed or file invalid, 2 usage error,
  3 store or run not available, 130 cancelled (SIGINT), 143 (SIGTERM),
  129 (SIGHUP); weir serve: SIGTERM/SIGINT drain and stop, SIGHUP reloads
  the pipelines folders
]]

local function eprintf(...) io.stderr:write(format(...)) end

local function open_store()
  local store, err = require("weir.run").open_store()
  if not store then eprintf("weir: %s\n", err) end
  return store
end

local function print_errors(errs)
  io.stderr:write(util.printable(pipeline.format_errors(errs)), "\n")
end

local function view_mode(o)
  if o.quiet then return "quiet" end
  if o["log-format"] == "json" then return "json" end
  local F = require("weir._ffi")
  if F.C.weir_ffi_isatty(2) == 1 then return "live" end
  return "plain"
end

-- "run X of P started": a line, or a JSON event with --log-format json.
local function announce(o, what, run_id, name)
  local mode = view_mode(o)
  if mode == "json" then
    io.stderr:write(json.encode({ time = util.rfc3339(require("weir.executor").now()),
                                  event = "run_" .. what, run_id = run_id,
                                  pipeline = name }), "\n")
  elseif mode ~= "quiet" then
    eprintf("run %s of %s %s\n", run_id, name, what)
  end
end

local function summary(tasks, run_id, status, e)
  local c = {}
  for _, t in ipairs(tasks) do c[t.state] = (c[t.state] or 0) + 1 end
  local parts = {}
  for _, s in ipairs({ "success", "failed", "upstream_failed", "skipped", "cancelled" }) do
    if c[s] then parts[#parts + 1] = format("%d %s", c[s], s) end
  end
  -- to the run's end (the OpenLineage export may deliver after it)
  local secs = ((e.ended or require("weir.executor").mono()) - e.started) / 1000
  local paint = require("weir.color").painter(2)
  eprintf("run %s %s in %s: %s\n", run_id, paint(status, status), util.human_duration(secs),
          concat(parts, ", "))
  -- rows rejected to dead-letter files, by task (rows in = loaded + rejected)
  local rejected = {}
  for _, t in ipairs(tasks) do
    local n = e.T[t.task] and e.T[t.task].rejected or 0
    if n > 0 then rejected[#rejected + 1] = format("%s %d", t.task, n) end
  end
  if #rejected > 0 then eprintf("  rows rejected: %s\n", concat(rejected, ", ")) end
  local shown = 0
  for _, t in ipairs(tasks) do
    if t.state == "failed" and shown < 10 then
      shown = shown + 1
      eprintf("  task %s %s after %d attempt(s): %s\n", t.task, paint("failed", "failed"),
              t.attempts, util.printable(t.error or "?"))
    end
  end
  if status ~= "success" then
    eprintf("details: weir show %s\n", run_id)
  end
end

local function exit_code(status, e)
  if status == "success" then return 0 end
  if status == "cancelled" then
    return type(e.cancelled_by) == "number" and 128 + e.cancelled_by or 130
  end
  return 1
end

-- warn(message) of a run: said unless --log-level error (-q)
local function warner(o)
  return function(m) if o["log-level"] ~= "error" then eprintf("%s\n", m) end end
end

-- Prepare and execute a run object (weir.run), printing as it goes.
local function drive(r, o, cmd)
  local ok, err = r:prepare()
  if not ok then
    if err.located then
      eprintf("%s\n", util.printable(err.message))
    else
      eprintf("%s: %s\n", cmd, util.printable(err.message))
    end
    r:close()
    return err.exit
  end
  if o.debug then
    local runm = require("weir.run")
    local pr = runm.project()
    eprintf("weir: project %s, configuration %s, metadata store %s\n", pr and pr.root or "?",
            r.conf.where, runm.store_url(r.conf) and "from WEIR_METADATA_URL or metadata_url"
            or runm.home() .. "/weir.db")
  end
  announce(o, r.resumed and "resumed" or "started", r.id, r.P.name)
  local status, xerr = r:execute(require("weir.view").new(view_mode(o)))
  if not status then
    eprintf("%s: %s\n", cmd, util.printable(xerr.message))
    r:close()
    return xerr.exit
  end
  if not o.quiet and o["log-format"] ~= "json" then summary(r:tasks(), r.id, status, r.engine) end
  if r.export_summary then eprintf("%s\n", r.export_summary) end
  r:close()
  return exit_code(status, r)
end

command {
  name = "run", args = { "FILE" }, complete = { "file" },
  summary = "run a pipeline (.lua, .yaml, .yml or .json)",
  help = "Records the run in the metadata store (weir runs, weir show) and shows its tasks "
    .. "as they go: a live table on a terminal, one line per change otherwise.",
  options = {
    OPT.param, OPT.workers,
    { name = "only", arg = "TASK", help = "run only this task (the others are skipped)" },
    { name = "from", arg = "TASK", help = "run this task and everything downstream of it" },
    OPT.log_format, OPT.config,
  },
  run = function(o, pos)
  if o.only and o.from then
    eprintf("weir run: --only and --from cannot be used together\n"); return 2
  end
  return drive(require("weir.run").new({
    file = pos[1], params = o.params, workers = o.workers, only = o.only, from = o.from,
    config = o.config, warn = warner(o),
  }), o, "weir run")
  end,
}

command {
  name = "validate", args = { "FILE" }, complete = { "file" },
  summary = "check a pipeline; prints every error with its path",
  help = "Also checks the configuration the run would use (weir.yaml next to the file or "
    .. "above it) and that every connection the pipeline names with ctx.source(\"NAME\") or "
    .. "ctx.sink(\"NAME\") is in it.",
  options = { OPT.json, OPT.config },
  run = function(o, pos)
  local P, errs = pipeline.load(pos[1])
  if not P then
    if o.json then
      local list = setmetatable({}, json.array_mt)
      for i, e in ipairs(errs) do
        list[i] = { path = e.path, message = e.message, line = e.line }
      end
      io.write(json.encode({ valid = false, file = errs.file, errors = list }), "\n")
    else
      print_errors(errs)
      eprintf("%s: %d error(s)\n", pos[1], #errs)
    end
    return 1
  end
  -- the configuration the run would use, and the connections the
  -- pipeline names in it
  local runm = require("weir.run")
  local pr, perr = runm.locate({ file = pos[1], config = o.config })
  local cfg, cerrs
  if pr then cfg, cerrs = require("weir.config").load(pr.config) else cerrs = { perr } end
  if cfg and not pr.config then cfg.searched = pr.searched end
  local bad = cfg and runm.check_connections(P, { cfg = cfg, connections = cfg.connections })
  if not cfg or bad then
    local list = setmetatable({}, json.array_mt)
    for _, b in ipairs(bad or {}) do
      list[#list + 1] = { path = "", message = b.message, line = b.line }
    end
    for _, m in ipairs(cerrs or {}) do list[#list + 1] = { path = "", message = m } end
    if o.json then
      io.write(json.encode({ valid = false, file = pos[1], errors = list }), "\n")
    else
      for _, b in ipairs(bad or {}) do
        io.stderr:write(util.printable(format("%s:%d: %s", b.file, b.line, b.message)), "\n")
      end
      for _, m in ipairs(cerrs or {}) do io.stderr:write(util.printable(m), "\n") end
      eprintf("%s: %d error(s)\n", pos[1], #list)
    end
    return 1
  end
  local n = 0
  for _ in pairs(P.tasks) do n = n + 1 end
  if o.json then
    io.write(json.encode({ valid = true, name = P.name, tasks = n,
                           config = pr.config or json.null }), "\n")
  else
    io.write(format("%s: valid (pipeline %s, %d task%s)\n", pos[1], P.name, n, n == 1 and "" or "s"))
  end
  return 0
  end,
}

local function fmt_time(ms)
  if not ms then return "-" end
  return os.date("!%Y-%m-%d %H:%M:%S", math.floor(ms / 1000))
end

-- A request to weir serve (--server, WEIR_SERVER, WEIR_TOKEN): the body
-- of a 2xx answer, or nil after printing why (exit code 1, or 3 when the
-- server could not be reached).
local function remote(cmd, method, path, body, o)
  local client = require("weir.client")
  local status, res = client.request(method, path, body, { server = o.server })
  if not status then eprintf("%s: %s\n", cmd, util.printable(res)); return nil, 3 end
  if status >= 300 then
    eprintf("%s: %s\n", cmd, util.printable(client.describe(status, res)))
    return nil, 1
  end
  return res, status
end

-- The JSON shapes of weir runs and weir show (docs/cli.md): the names
-- the HTTP API uses (run_id), times in RFC 3339 UTC, durations in
-- seconds; a row of the store or of weir serve's API alike.
local RUN_STATUSES = { "queued", "running", "success", "failed", "cancelled", "interrupted" }

-- The run's working time in ms (the sessions', not the gaps between them),
-- or nil when it has not started.
local function run_duration(r)
  if r.active_ms then return r.active_ms end
  if not r.started_at then return nil end
  if r.finished_at then return r.finished_at - r.started_at end
  if r.status == "running" then return require("weir.executor").now() - r.started_at end
  return nil
end

-- A run (or task) of the API (run_id, RFC 3339 times) in the store's
-- shape (id, ms), so one printer serves both.
local function from_api(r)
  local parse = require("weir.scheduler").parse_time
  r.id = r.id or r.run_id
  for _, k in ipairs({ "created_at", "started_at", "finished_at" }) do
    if type(r[k]) == "string" then r[k] = parse(r[k]) end
  end
  for _, t in ipairs(r.tasks or {}) do from_api(t) end
  return r
end

local function run_json(r, gone)
  local d = run_duration(r)
  return { run_id = r.run_id or r.id, pipeline = r.pipeline, status = r.status,
           supervisor_gone = gone or nil, error = r.error,
           created_at = util.rfc3339(r.created_at), started_at = util.rfc3339(r.started_at),
           finished_at = util.rfc3339(r.finished_at),
           duration_s = d and math.floor(d + 0.5) / 1000 or nil,
           logical_time = type(r.logical_time) == "number" and util.rfc3339(r.logical_time)
                          or r.logical_time }
end

-- "running (supervisor gone; weir resume ID)", or the status
local function status_text(r, gone, long)
  if not gone then return r.status end
  if long then return "running (supervisor gone; weir resume " .. r.id .. " finishes it)" end
  return "running (supervisor gone)"
end

command {
  name = "runs", args = {},
  summary = "list recent runs, newest first (of weir serve with --server)",
  help = "Runs are kept in the project's metadata store (.weir/weir.db in the folder of "
    .. "weir.yaml, or WEIR_METADATA_URL), so this lists the same history from anywhere in "
    .. "the project.",
  options = {
    { name = "status", arg = "STATUS", choices = RUN_STATUSES,
      help = "only runs in this state (interrupted: running, its supervisor gone)" },
    { name = "pipeline", arg = "NAME", help = "only runs of this pipeline" },
    { name = "limit", arg = "N", number = true, min = 1, max = 100000,
      help = "at most N runs (default 20)" },
    OPT.json, OPT.server,
  },
  run = function(o)
  local runm = require("weir.run")
  local runs, gone = {}, {}
  local limit = o.limit or 20
  local want = o.status == "interrupted" and "running" or o.status
  if o.server or os.getenv("WEIR_SERVER") then
    local client = require("weir.client")
    local q = "?limit=" .. limit
    if o.pipeline then q = q .. "&pipeline=" .. client.pct(o.pipeline) end
    if want then q = q .. "&status=" .. client.pct(want) end
    local res, code = remote("weir runs", "GET", "/api/v1/runs" .. q, nil, o)
    if not res then return code end
    runs = res.runs
    for _, r in ipairs(runs) do from_api(r) end
  else
    local store = open_store()
    if not store then return 3 end
    -- interrupted runs are running ones whose supervisor is gone: read
    -- pages until enough are found
    local after
    repeat
      local page, nxt = store:runs_page({ pipeline = o.pipeline, status = want,
                                          limit = math.min(limit, 1000), after = after })
      for _, r in ipairs(page) do
        local g = runm.interrupted(r)
        if #runs < limit and (o.status ~= "interrupted" or g) then
          runs[#runs + 1] = r
          gone[r] = g
        end
      end
      after = nxt
    until not after or #runs >= limit
    store:close()
  end
  if o.json then
    local list = setmetatable({}, json.array_mt)
    for _, r in ipairs(runs) do list[#list + 1] = run_json(r, gone[r]) end
    io.write(json.encode(list), "\n")
    return 0
  end
  if #runs == 0 then io.write("no runs yet\n"); return 0 end
  local paint = require("weir.color").painter(1)
  io.write(format("%-28s %-20s %-25s %-19s %s\n", "RUN", "PIPELINE", "STATUS", "STARTED (UTC)",
                  "DURATION"))
  for _, r in ipairs(runs) do
    local d = run_duration(r)
    local st = status_text(r, gone[r])
    io.write(format("%-28s %-20s %s%s %-19s %s\n", r.id, r.pipeline,
                    paint(gone[r] and "interrupted" or r.status, st),
                    string.rep(" ", math.max(0, 25 - #st)), fmt_time(r.started_at or r.created_at),
                    d and util.human_duration(d / 1000) or "-"))
  end
  return 0
  end,
}

-- The tasks in the order they started (never started: after, by name).
local function start_order(tasks)
  table.sort(tasks, function(a, b)
    local x = a.started_at or a.finished_at or math.huge
    local y = b.started_at or b.finished_at or math.huge
    if x ~= y then return x < y end
    return a.task < b.task
  end)
  return tasks
end

-- The version (1, 2...) of the run attempt a ran: the latest that began
-- before it (weir retry --reload adds versions).
local function version_of(versions, a)
  local n = 1
  for _, v in ipairs(versions) do
    if a.started_at and v.since <= a.started_at then n = v.n end
  end
  return n
end

local function show_remote(o, pos)
  local id = pos[1]
  if id == "last" then
    local list, lcode = remote("weir show", "GET", "/api/v1/runs?limit=1", nil, o)
    if not list then return lcode end
    if not list.runs[1] then eprintf("weir show: no runs yet\n"); return 3 end
    id = list.runs[1].run_id
  end
  local res, code = remote("weir show", "GET", "/api/v1/runs/" .. require("weir.client").pct(id),
                           nil, o)
  if not res then return code end
  from_api(res)
  local keep = {}
  for _, t in ipairs(res.tasks or {}) do
    if (not o.task or t.task == o.task)
       and (not o.failed or (t.state ~= "success" and t.state ~= "skipped")) then
      keep[#keep + 1] = t
    end
  end
  res.tasks = start_order(keep)
  if o.json then
    local v = run_json(res)
    local list = setmetatable({}, json.array_mt)
    for _, t in ipairs(res.tasks or {}) do
      list[#list + 1] = { task = t.task, state = t.state, attempts = t.attempts, error = t.error,
                          started_at = util.rfc3339(t.started_at),
                          finished_at = util.rfc3339(t.finished_at),
                          rows_in = t.rows_in, rows_out = t.rows_out }
    end
    v.tasks = list
    io.write(json.encode(v), "\n")
    return 0
  end
  io.write(format("run %s of %s: %s\n", res.id, res.pipeline, res.status))
  for _, t in ipairs(res.tasks or {}) do
    io.write(format("  %-24s %-16s attempts %d%s\n", t.task, t.state, t.attempts or 0,
                    t.error and ("  " .. util.printable(t.error)) or ""))
  end
  return 0
end

-- The lines `weir show` prints for an attempt's checks.
local function show_checks(a)
  for _, c in ipairs(a.checks or {}) do
    local obs = c.observed ~= nil and ("  observed " .. util.printable(json.encode(c.observed))) or ""
    io.write(format("      check %-32s %-5s%s%s\n", c.name, c.status, obs,
                    c.message and ("  " .. util.printable(c.message)) or ""))
    if c.status ~= "pass" then io.write("        on ", util.printable(c.dataset or "?"), "\n") end
    for _, row in ipairs(c.samples or {}) do
      local text = json.encode(row)
      if #text > 160 then text = text:sub(1, 160) .. "..." end
      io.write("        | ", util.printable(text), "\n")
    end
  end
end

command {
  name = "show", args = { "RUN_ID" }, complete = { { "last" } },
  summary = "a run: status, tasks, attempts, errors, logs, outputs, check results",
  help = "RUN_ID may be `last` (the newest run) or a unique prefix of a run id (4 characters "
    .. "or more). Tasks are listed in the order they started; an attempt names the version of "
    .. "the pipeline it ran when the run has more than one (weir retry --reload).",
  options = {
    { name = "task", arg = "TASK", help = "only this task, every attempt with its whole log" },
    { name = "failed", help = "only the tasks that did not succeed" },
    { name = "timeline", help = "a text Gantt chart of the run's attempts (start, duration, "
                                .. "retries)" },
    OPT.json, OPT.server,
  },
  run = function(o, pos)
  if o.timeline then
    if o.server or os.getenv("WEIR_SERVER") then
      eprintf("weir show: --timeline reads this host's metadata store, not weir serve's API\n")
      return 2
    end
    return M.timeline(pos[1])
  end
  if o.server or os.getenv("WEIR_SERVER") then return show_remote(o, pos) end
  local runm = require("weir.run")
  local store = open_store()
  if not store then return 3 end
  local run, ferr = runm.find_run(store, pos[1])
  if not run then store:close(); eprintf("weir show: %s\n", ferr); return 3 end
  local tasks, attempts = start_order(store:tasks(run.id)), store:attempts(run.id)
  local check_rows = store:checks(run.id)
  local versions = store:run_versions(run.id)
  local hash = store:version(run.version_id).hash
  store:close()
  if o.task then
    local found
    for _, t in ipairs(tasks) do if t.task == o.task then found = t end end
    if not found then eprintf("weir show: run %s has no task %q\n", run.id, o.task); return 3 end
    tasks = { found }
  end
  if o.failed then
    local keep = {}
    for _, t in ipairs(tasks) do
      if t.state ~= "success" and t.state ~= "skipped" then keep[#keep + 1] = t end
    end
    tasks = keep
  end
  local by_task = {}
  for _, a in ipairs(attempts) do
    by_task[a.task] = by_task[a.task] or {}
    local l = by_task[a.task]
    l[#l + 1] = a
  end
  local views = require("weir.store").check_views(check_rows)
  for _, a in ipairs(attempts) do a.checks = views[a.task .. "\0" .. a.attempt] end
  local gone = runm.interrupted(run)
  if o.json then
    local v = run_json(run, gone)
    v.params = json.decode(run.params)
    local opts = json.decode(run.options) or {}
    v.options = { workers = opts.workers, only = opts.only, from = opts.from }
    v.trigger = require("weir.triggers").describe(opts, run.logical_time
                                                  and util.rfc3339(run.logical_time))
    v.cause = opts.cause
    v.version = #versions > 0 and versions[#versions].n or 1
    v.hash = hash
    local vl = setmetatable({}, json.array_mt)
    for _, x in ipairs(versions) do
      vl[#vl + 1] = { version = x.n, hash = x.hash, since = util.rfc3339(x.since) }
    end
    v.versions = vl
    local list = setmetatable({}, json.array_mt)
    for _, t in ipairs(tasks) do
      local al = setmetatable({}, json.array_mt)
      for _, a in ipairs(by_task[t.task] or {}) do
        al[#al + 1] = { attempt = a.attempt, status = a.status,
                        version = version_of(versions, a), worker_pid = a.worker_pid,
                        started_at = util.rfc3339(a.started_at),
                        finished_at = util.rfc3339(a.finished_at), error = a.error,
                        output = a.output and json.decode(a.output) or nil, log = a.log,
                        mem_peak = a.mem_peak, rows_in = a.rows_in, rows_out = a.rows_out,
                        checks = a.checks }
      end
      list[#list + 1] = { task = t.task, state = t.state, attempts = t.attempts,
                          error = t.error, output = t.output and json.decode(t.output) or nil,
                          started_at = util.rfc3339(t.started_at),
                          finished_at = util.rfc3339(t.finished_at),
                          rows_in = t.rows_in, rows_out = t.rows_out, attempt_list = al }
    end
    v.tasks = list
    io.write(json.encode(v), "\n")
    return 0
  end
  local paint = require("weir.color").painter(1)
  local d = run_duration(run)
  io.write(format("run %s  pipeline %s  status %s\n", run.id, run.pipeline,
                  paint(gone and "interrupted" or run.status, status_text(run, gone, true))))
  if run.error then io.write(paint("error", "error: "), util.printable(run.error), "\n") end
  io.write(format("started %s  finished %s  working time %s  params %s\n",
                  fmt_time(run.started_at), fmt_time(run.finished_at),
                  d and util.human_duration(d / 1000) or "-", util.printable(run.params)))
  local cause = require("weir.triggers").describe(run.options, run.logical_time
                                                 and require("weir.scheduler").iso(run.logical_time))
  if cause then io.write("trigger: ", util.printable(cause), "\n") end
  if #versions > 1 then
    local parts = {}
    for _, x in ipairs(versions) do
      parts[#parts + 1] = format("%d (%s, from %s)", x.n, x.hash:sub(1, 12), fmt_time(x.since))
    end
    io.write("versions: ", concat(parts, ", "), "\n")
  end
  for _, t in ipairs(tasks) do
    local dur = t.finished_at and t.started_at
                and util.human_duration((t.finished_at - t.started_at) / 1000) or "-"
    io.write(format("  %-24s %s%s attempts %d  %s", t.task, paint(t.state, t.state),
                    string.rep(" ", math.max(0, 16 - #t.state)), t.attempts, dur))
    if (t.rows_out or 0) > 0 or (t.rows_in or 0) > 0 then
      io.write(format("  rows in %d out %d", t.rows_in, t.rows_out))
    end
    io.write("\n")
    if t.error then io.write(paint("error", "      error: "), util.printable(t.error), "\n") end
    if t.output and t.output ~= "null" then
      local s = t.output
      if #s > 200 and not o.task then s = s:sub(1, 200) .. "..." end
      io.write("      output: ", util.printable(s), "\n")
    end
    for _, a in ipairs(by_task[t.task] or {}) do
      if o.task or a.status ~= "success" or (a.log and a.log ~= "") or #versions > 1
         or a.checks then
        io.write(format("      attempt %d %s%s%s\n", a.attempt, paint(a.status, a.status),
                        #versions > 1 and format(" (version %d)", version_of(versions, a)) or "",
                        a.error and (": " .. util.printable(a.error)) or ""))
        show_checks(a)
        if a.log and a.log ~= "" then
          for line in (a.log .. "\n"):gmatch("(.-)\n") do
            io.write("        | ", util.printable(line), "\n")
          end
        end
      end
    end
  end
  return 0
  end,
}

--- weir show RUN_ID --timeline: the attempts as a text Gantt chart.
function M.timeline(id)
  local store = open_store()
  if not store then return 3 end
  local run, ferr = require("weir.run").find_run(store, id)
  if not run then store:close(); eprintf("weir show: %s\n", ferr); return 3 end
  local attempts = store:attempts(run.id)
  store:close()
  io.write(require("weir.picture").timeline(run, attempts))
  return 0
end

--- weir lineage DATASET | --run RUN_ID [--json]: from the store's lineage.
command {
  name = "lineage", args = { "[DATASET]" },
  usage = { "DATASET [--json]", "--run RUN_ID [--json]" },
  summary = "which pipelines and tasks write and read a dataset, upstream and downstream, "
    .. "as a tree; or what each attempt of a run read and wrote (docs/lineage.md)",
  options = {
    { name = "run", arg = "RUN_ID", help = "what each attempt of this run read and wrote" },
    OPT.json, OPT.config,
  },
  run = function(o, pos)
  if (o.run and #pos ~= 0) or (not o.run and #pos ~= 1) then
    eprintf("weir lineage: expected DATASET, or --run RUN_ID (weir lineage --help)\n")
    return 2
  end
  local lineage = require("weir.lineage")
  local store = open_store()
  if not store then return 3 end
  if o.run then
    local run = require("weir.run").find_run(store, o.run)
    local rows = run and store:lineage_run(run.id)
    store:close()
    if not run then eprintf("weir lineage: no run %q\n", o.run); return 3 end
    if o.json then
      local list = setmetatable({}, json.array_mt)
      for i, r in ipairs(rows) do
        list[i] = { task = r.task, attempt = r.attempt, status = r.status, dataset = r.dataset,
                    role = r.role, rows = r.rows, columns = r.columns, at = r.at }
      end
      io.write(json.encode({ run_id = run.id, pipeline = run.pipeline, datasets = list }), "\n")
      return 0
    end
    io.write(format("run %s of %s: %s\n", run.id, run.pipeline, run.status))
    if #rows == 0 then io.write("  no dataset was read or written\n") end
    local last
    for _, r in ipairs(rows) do
      local key = r.task .. "#" .. r.attempt
      if key ~= last then
        io.write(format("  %s (attempt %d, %s)\n", r.task, r.attempt, r.status))
        last = key
      end
      local cols = ""
      if r.columns then
        local c = {}
        for i, x in ipairs(r.columns) do c[i] = tostring(x.name) .. " " .. tostring(x.type) end
        cols = "  (" .. concat(c, ", ") .. ")"
      end
      io.write(format("    %-6s %s  %d rows%s\n", r.role == "output" and "wrote" or "read",
                      util.printable(r.dataset), r.rows, util.printable(cols)))
    end
    return 0
  end
  -- names are relative to the project folder: weir.yaml's, else this one
  local ok, cfg = pcall(require("weir.config").open, { path = o.config })
  local project = ok and cfg and cfg.dir or pipeline.abspath(".")
  local name, nerr = lineage.normalize(pos[1], project)
  if not name then store:close(); eprintf("weir lineage: %s\n", nerr); return 2 end
  local edges = store:lineage_edges()
  store:close()
  local tree = lineage.tree(edges, name)
  if o.json then
    local function arrays(nodes, dir)
      setmetatable(nodes, json.array_mt)
      for _, n in ipairs(nodes) do
        setmetatable(n.datasets, json.array_mt)
        for _, d in ipairs(n.datasets) do if d[dir] then arrays(d[dir], dir) end end
      end
    end
    arrays(tree.upstream, "upstream")
    arrays(tree.downstream, "downstream")
    io.write(json.encode(tree), "\n")
  else
    for _, l in ipairs(lineage.tree_lines(tree)) do io.write(util.printable(l), "\n") end
  end
  if #tree.upstream == 0 and #tree.downstream == 0 then
    eprintf("weir lineage: no recorded run read or wrote %s\n", name)
    return 1
  end
  return 0
  end,
}

--- weir graph FILE [--format text|dot|mermaid|svg]: a pipeline's DAG.
command {
  name = "graph", args = { "FILE" }, complete = { "file" },
  summary = "a pipeline's tasks and dependencies: a tree, Graphviz DOT, Mermaid, or SVG "
    .. "(needs Graphviz's dot)",
  options = {
    { name = "format", arg = "FORMAT", choices = { "text", "dot", "mermaid", "svg" },
      help = "text (default), dot, mermaid or svg" },
  },
  run = function(o, pos)
  local fmt = o.format or "text"
  local picture = require("weir.picture")
  local P, errs = pipeline.load(pos[1])
  if not P then print_errors(errs); return 1 end
  if fmt ~= "svg" then io.write(picture.graph(P, fmt)); return 0 end
  -- SVG: the DOT text through Graphviz, when it is installed
  if os.execute("command -v dot >/dev/null 2>&1") ~= 0 then
    eprintf("weir graph: --format svg needs Graphviz's dot, which is not installed (Debian: "
            .. "apt-get install graphviz); --format dot writes the DOT text to render elsewhere\n")
    return 1
  end
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(picture.graph(P, "dot"))
  f:close()
  local p = io.popen("dot -Tsvg " .. tmp .. " 2>&1")
  local svg = p:read("*a")
  local okp = p:close()
  os.remove(tmp)
  if not okp or not svg:find("<svg", 1, true) then
    eprintf("weir graph: dot failed: %s\n", util.printable(svg)); return 1
  end
  io.write(svg)
  return 0
  end,
}

local RELOAD = { name = "reload", help = "run the pipeline file as it is now (recorded as a "
                                       .. "new version of the run) instead of the stored one" }
local FORCE = { name = "force", help = "take the run over even when its recorded supervisor "
                                     .. "still looks alive" }

local function resume_command(o, pos, cmd, tasks)
  return drive(require("weir.run").resume(pos[1], {
    workers = o.workers, config = o.config, force = o.force, reload = o.reload, tasks = tasks,
    retry = cmd == "weir retry",
    warn = warner(o),
    notice = function(m) if not o.quiet then eprintf("%s\n", util.printable(m)) end end,
  }), o, cmd)
end

command {
  name = "resume", args = { "RUN_ID" }, complete = { { "last" } },
  summary = "finish a run that was interrupted or failed, re-running only what did not "
    .. "succeed",
  help = "RUN_ID may be `last` or a unique prefix of a run id. The run's stored version of "
    .. "the pipeline is used (said when the file has changed since) unless --reload.",
  options = { OPT.workers, OPT.log_format, OPT.config, FORCE, RELOAD },
  run = function(o, pos) return resume_command(o, pos, "weir resume") end,
}

command {
  name = "retry", args = { "RUN_ID" }, complete = { { "last" } },
  summary = "run failed tasks (or --task ones) again with everything downstream, keeping the "
    .. "outputs of what succeeded upstream",
  help = "Fixed the code? `weir retry RUN_ID --reload` runs the pipeline file as it is now: "
    .. "the failed tasks and what follows them run again in the same run, with the outputs "
    .. "of the tasks that succeeded before; the new source is recorded as a new version of "
    .. "the run and weir show says which version each attempt ran. --task runs a task again "
    .. "even if it succeeded. Without --reload the stored version is used (said when the "
    .. "file has changed since). RUN_ID may be `last` or a unique prefix of a run id.",
  options = {
    { name = "task", arg = "TASK", many = true,
      help = "run this task again, and what follows it (repeat for more; default: the "
             .. "tasks that did not succeed)" },
    RELOAD, OPT.workers, OPT.log_format, OPT.config, FORCE,
  },
  run = function(o, pos) return resume_command(o, pos, "weir retry", o.task) end,
}

--- weir health: the metadata store, then each connection of weir.yaml:
-- latency of a round trip and its circuit breaker. Exit 0 when all answer.
command {
  name = "health", args = {},
  summary = "check the metadata store and every connection of weir.yaml (latency, circuit "
    .. "breaker); exit 1 on failure",
  options = { OPT.config, OPT.json },
  run = function(o)
  local run = require("weir.run")
  local conf, cerr = run.config(o.config, function(m) eprintf("%s\n", m) end)
  if not conf then eprintf("%s\n", util.printable(cerr)); return 1 end
  local ex = require("weir.executor")
  local checks, failed = {}, false
  local function check(kind, name, describe, fn)
    local t0 = ex.mono()
    local ok, err = pcall(fn)
    local c = { kind = kind, name = name, target = describe, ok = ok,
                latency_ms = ok and math.floor((ex.mono() - t0) * 100 + 0.5) / 100 or nil,
                error = not ok and conf.redact(tostring(err)) or nil }
    failed = failed or not ok
    checks[#checks + 1] = c
    return c
  end
  local murl = run.store_url(conf)
  local where = (murl and murl ~= "") and require("weir.config").redact(conf.cfg, murl)
                or "WEIR_HOME " .. run.home()
  check("metadata", "store", where, function()
    local store, err = require("weir.store").open(run.home(), murl)
    if not store then error(tostring(err), 0) end
    store:runs(1)
    store:close()
  end)
  local names = {}
  for name in pairs(conf.connections) do names[#names + 1] = name end
  table.sort(names)
  local breakers = require("weir.breaker")
  local config = require("weir.config")
  for _, name in ipairs(names) do
    local c = conf.connections[name]
    local res = check(c.type, name, config.describe(conf.cfg.connections[name]), function()
      if c.resolve_error then error(c.resolve_error, 0) end
      require("weir.connectors").get(c.type).ping(c)
    end)
    local b = breakers.info(c)
    if b then res.breaker = b.state; res.breaker_retry_in_ms = b.state == "open" and b.retry_in_ms or nil end
  end
  -- what the OpenLineage export sent and dropped (weir run and weir
  -- serve add to these counters); shown, never a failure of health
  local export = setmetatable({}, json.array_mt)
  pcall(function()
    local store = require("weir.store").open(run.home(), murl)
    if not store then return end
    for i, r in ipairs(store:export_stats()) do
      export[i] = { target = r.target, sent = r.sent, dropped = r.dropped,
                    last_error = r.last_error, updated_at = r.updated_at }
    end
    store:close()
  end)
  if o.json then
    io.write(json.encode({ ok = not failed, checks = checks, openlineage = export }), "\n")
  else
    for _, c in ipairs(checks) do
      io.write(format("%-4s %-9s %-16s %s%s%s\n", c.ok and "ok" or "FAIL", c.kind, c.name,
                      c.ok and format("%.2f ms", c.latency_ms) or util.printable(c.error),
                      c.breaker and ("  breaker " .. c.breaker) or "",
                      "  (" .. c.target .. ")"))
    end
    for _, x in ipairs(export) do
      io.write(format("openlineage: %d sent, %d dropped  (%s)%s\n", x.sent, x.dropped,
                      util.printable(x.target),
                      x.last_error and "  last error: " .. util.printable(x.last_error) or ""))
    end
  end
  return failed and 1 or 0
  end,
}

--- weir trigger: a run of PIPELINE on weir serve; --wait until it ends.
command {
  name = "trigger", args = { "PIPELINE" },
  summary = "start a run on weir serve; --wait until it ends (exit 0 when it succeeded)",
  options = {
    OPT.param, { name = "wait", help = "wait until the run ends" }, OPT.json, OPT.server,
  },
  run = function(o, pos)
  local client = require("weir.client")
  local path = "/api/v1/pipelines/" .. client.pct(pos[1]) .. "/runs"
  local res, code = remote("weir trigger", "POST", path .. (o.wait and "?wait=300s" or ""),
                           { params = o.params }, o)
  if not res then return code end
  while o.wait and (res.status == "queued" or res.status == "running") do
    res, code = remote("weir trigger", "GET", "/api/v1/runs/" .. client.pct(res.run_id), nil, o)
    if not res then return code end
    if res.status == "queued" or res.status == "running" then
      require("weir.executor").sleep(500)
    end
  end
  if o.json then io.write(json.encode(res), "\n") else io.write(res.run_id, " ", res.status, "\n") end
  if o.wait then return res.status == "success" and 0 or 1 end
  return 0
  end,
}

--- weir backfill PIPELINE --from T --to T: runs over past intervals.
command {
  name = "backfill", args = { "PIPELINE" },
  summary = "one run per scheduled interval in [--from, --to] on weir serve, never one "
    .. "already run unless --rerun",
  options = {
    { name = "from", arg = "T", help = "first logical time (YYYY-MM-DD or "
                                       .. "YYYY-MM-DDTHH:MM:SSZ, UTC); required" },
    { name = "to", arg = "T", help = "last logical time; required" },
    { name = "dry-run", help = "count the logical times, create nothing" },
    { name = "rerun", help = "also the logical times already run" },
    { name = "max-active", arg = "N", number = true, min = 1, max = 1000000,
      help = "at most N runs of this backfill active at once (besides the pipeline's "
             .. "max_active_runs)" },
    OPT.server,
  },
  run = function(o, pos)
  if not o.from or not o.to then
    eprintf("weir backfill: --from and --to are required (weir backfill --help)\n"); return 2
  end
  local res, code = remote("weir backfill", "POST", "/api/v1/pipelines/"
                           .. require("weir.client").pct(pos[1]) .. "/backfill",
                           { from = o.from, to = o.to, dry_run = o["dry-run"] or nil,
                             rerun = o.rerun or nil, max_active = o["max-active"] }, o)
  if not res then return code end
  if res.dry_run then
    io.write(format("%s: %d logical times, %s .. %s (dry run: nothing created)\n", res.pipeline,
                    res.logical_times, res.first or "-", res.last or "-"))
  else
    io.write(format("%s: %d runs queued, %d logical times already run (skipped)\n",
                    res.pipeline, res.created, res.skipped))
  end
  return 0
  end,
}

--- weir schedules [pause|unpause NAME]: the schedules of weir serve.
command {
  name = "schedules", args = { "[pause|unpause]", "[PIPELINE]" },
  complete = { { "pause", "unpause" } },
  usage = { "[--json] [--server URL]", "pause|unpause PIPELINE [--server URL]" },
  summary = "weir serve's schedules: next five fires (local and UTC), last fire; pause or "
    .. "unpause one",
  options = { OPT.json, OPT.server },
  run = function(o, pos)
  local client = require("weir.client")
  if (pos[1] == "pause" or pos[1] == "unpause") and #pos == 2 then
    local res, code = remote("weir schedules", "POST", "/api/v1/pipelines/" .. client.pct(pos[2])
                             .. "/schedule/" .. pos[1], nil, o)
    if not res then return code end
    io.write(format("%s %s\n", res.pipeline, res.paused and "paused" or "unpaused"))
    return 0
  end
  if #pos ~= 0 then
    eprintf("weir schedules: expected pause|unpause PIPELINE, or nothing\n"); return 2
  end
  local res, code = remote("weir schedules", "GET", "/api/v1/schedules", nil, o)
  if not res then return code end
  if o.json then io.write(json.encode(res), "\n"); return 0 end
  if #res.schedules == 0 then io.write("no scheduled pipelines\n"); return 0 end
  for _, sc in ipairs(res.schedules) do
    io.write(format("%s  %q in %s, catch-up %s%s; last fire %s\n", sc.pipeline, sc.cron,
                    sc.timezone, sc.catchup, sc.paused and ", PAUSED" or "",
                    sc.last_fire or "never"))
    for _, n in ipairs(sc.next) do
      io.write(format("    %s  (%s)\n", n["local"], n.utc))
    end
  end
  return 0
  end,
}

--- weir cancel RUN_ID: cancel a run on weir serve.
command {
  name = "cancel", args = { "RUN_ID" },
  summary = "cancel a run on weir serve",
  options = { OPT.server },
  run = function(o, pos)
  local res, code = remote("weir cancel", "POST", "/api/v1/runs/"
                           .. require("weir.client").pct(pos[1]) .. "/cancel", nil, o)
  if not res then return code end
  io.write(res.run_id, " ", res.status, "\n")
  return 0
  end,
}

command {
  name = "serve", args = {},
  summary = "the HTTP service: many runs at once over one worker pool (docs/api.md, "
    .. "docs/operations.md)",
  options = {
    { name = "listen", arg = "ADDR:PORT", help = "where to listen (default: weir.yaml's "
                                                 .. "server.listen, else 127.0.0.1:8080)" },
    OPT.workers, OPT.config,
  },
  run = function(o)
  return require("weir.serve").main({ listen = o.listen, workers = o.workers, config = o.config })
  end,
}

local function check_role(cmd, role)
  if not require("weir.api").ROLES[role or ""] then
    eprintf("weir %s: --role must be viewer, operator, developer or admin\n", cmd)
    return false
  end
  return true
end

-- A password from the terminal (not echoed) or the first line of stdin.
local function read_password()
  local F = require("weir._ffi")
  local tty = F.C.weir_ffi_isatty(0) == 1
  if tty then
    io.stderr:write("password: ")
    F.C.weir_ffi_echo(0, 0)
  end
  local pw = io.stdin:read("*l")
  if tty then
    F.C.weir_ffi_echo(0, 1)
    io.stderr:write("\n")
  end
  return pw
end

-- weir users disable / weir keys revoke: fn() makes the change (false:
-- no such one) in a transaction; says what happened, closes the store.
local function change(store, cmd, what, id, done, fn)
  store:begin()
  local found = fn()
  store:commit()
  store:close()
  if not found then eprintf("weir %s: no %s %s\n", cmd, what, id); return 1 end
  io.write(format("%s %s %s\n", what, id, done))
  return 0
end

-- --pipelines a,b as the stored scope (nil: all), or false after saying why
local function scope_arg(cmd, text)
  if not text then return nil end
  local list = {}
  for n in text:gmatch("[^,]+") do list[#list + 1] = n end
  local scope, err = require("weir.api").scope_text(list)
  if not scope then eprintf("weir %s: --%s\n", cmd, err); return false end
  return scope
end

-- weir users / weir keys: the options, the arguments and the store; or
-- nil and the exit code, after saying why.
local function admin_command(o, pos)
  local store = open_store()
  if not store then return nil, 3 end
  return o, pos, store
end

-- --role and --pipelines of users add / keys create: the scope (nil:
-- every pipeline), or false after saying why.
local function role_scope(cmd, o)
  if not check_role(cmd, o.role) then return false end
  return scope_arg(cmd, o.pipelines)
end

command {
  name = "users", args = { "add|list|disable", "[NAME]" },
  complete = { { "add", "list", "disable" } },
  usage = { "add NAME --role ROLE [--pipelines A,B]", "list", "disable NAME" },
  summary = "people who may use the HTTP API",
  help = "users add reads the password from the terminal (not echoed), or the first line "
    .. "of stdin.",
  options = { OPT.role, OPT.pipelines },
  run = function(o, pos)
  local usage = "weir users: expected add NAME --role ROLE, list or disable NAME\n"
  local store
  o, pos, store = admin_command(o, pos)
  if not o then return pos end
  local sub = pos[1]
  if sub == "add" and #pos == 2 then
    local scope = role_scope("users add", o)
    if scope == false then return 2 end
    if not pos[2]:match("^[%w_.@-]+$") or #pos[2] > 64 then
      eprintf("weir users add: a name is 1..64 of A-Z a-z 0-9 _ . @ -\n"); return 2
    end
    local pw = read_password()
    if not pw or #pw < 8 then eprintf("weir users add: a password needs 8 characters or more\n"); return 2 end
    if store:user(pos[2]) then eprintf("weir users add: user %s exists\n", pos[2]); return 1 end
    local hash = require("weir.auth").hash_password(pw)
    store:begin()
    store:users_add(pos[2], o.role, hash, require("weir.executor").now(), scope)
    store:commit()
    io.write(format("user %s added (%s)\n", pos[2], o.role))
  elseif sub == "list" and #pos == 1 then
    for _, u in ipairs(store:users()) do
      io.write(format("%-24s %-10s %-9s %s\n", u.name, u.role,
                      u.disabled and "disabled" or "enabled", u.pipelines or "all pipelines"))
    end
  elseif sub == "disable" and #pos == 2 then
    return change(store, "users disable", "user", pos[2], "disabled", function()
      return store:user_set_disabled(pos[2], true)
    end)
  else
    eprintf(usage); return 2
  end
  store:close()
  return 0
  end,
}

command {
  name = "keys", args = { "create|list|revoke", "[NAME|ID]" },
  complete = { { "create", "list", "revoke" } },
  usage = { "create NAME --role ROLE [--pipelines A,B]", "list", "revoke ID" },
  summary = "API keys of the HTTP API (shown once, stored hashed)",
  options = { OPT.role, OPT.pipelines },
  run = function(o, pos)
  local usage = "weir keys: expected create NAME --role ROLE, list or revoke ID\n"
  local store
  o, pos, store = admin_command(o, pos)
  if not o then return pos end
  local sub = pos[1]
  local now = require("weir.executor").now()
  if sub == "create" and #pos == 2 then
    local scope = role_scope("keys create", o)
    if scope == false then return 2 end
    local k = require("weir.auth").new_api_key()
    store:begin()
    store:key_add({ id = k.id, name = pos[2], role = o.role, hash = k.hash, created_at = now,
                    pipelines = scope })
    store:commit()
    io.stderr:write(format("key %s for %s (%s); shown once, keep it now:\n", k.id, pos[2],
                           o.role))
    io.write(k.key, "\n")
  elseif sub == "list" and #pos == 1 then
    for _, k in ipairs(store:keys()) do
      io.write(format("%-20s %-20s %-10s %-8s %s\n", k.id, k.name, k.role,
                      k.revoked_at and "revoked" or "active", k.pipelines or "all pipelines"))
    end
  elseif sub == "revoke" and #pos == 2 then
    return change(store, "keys revoke", "key", pos[2], "revoked", function()
      return store:key_revoke(pos[2], now)
    end)
  else
    eprintf(usage); return 2
  end
  store:close()
  return 0
  end,
}

command {
  name = "repl", args = { "[FILE]" }, complete = { "file" },
  summary = "a Lua prompt in a task's sandbox, with ctx and the connections of weir.yaml; "
    .. "FILE's tasks callable; stdin not a terminal: a script, exit 1 at the first error "
    .. "(docs/repl.md)",
  options = {
    OPT.param,
    { name = "timeout", arg = "DURATION", help = "the deadline of one command (default 5m)" },
    { name = "memory", arg = "SIZE", help = "the session's memory cap (default 1GB)" },
    OPT.config,
  },
  run = function(o, pos)
  local timeout, terr = util.duration(o.timeout or "5m")
  local memory, merr = util.size(o.memory or "1GB")
  if not timeout or not memory then eprintf("weir repl: %s\n", terr or merr); return 2 end
  return require("weir.repl").main({ file = pos[1], config = o.config, params = o.params,
                                      timeout = timeout * 1000, memory = memory })
  end,
}

-- The template library (weir.templates): each template loaded in a
-- worker (its code never runs here), with one pool for all of them.
local function with_templates(fn)
  local templates = require("weir.templates")
  local cat = templates.default_catalog()
  if cat.config_error then eprintf("weir templates: %s\n", cat.config_error); return 1 end
  for _, p in ipairs(cat.problems) do eprintf("weir templates: %s\n", p) end
  local exec, err = require("weir.executor").new({ workers = 1 })
  if not exec then eprintf("weir templates: %s\n", tostring(err)); return 3 end
  local function load(e)
    local P, errs = pipeline.load("template:" .. e.name .. "@" .. e.version,
                                  { exec = exec, source = e.source, kind = "lua", catalog = cat })
    if not P then print_errors(errs) end
    return P
  end
  local ok, code = pcall(fn, cat, load, templates)
  exec:close()
  if not ok then error(code, 0) end
  return code
end

local TEMPLATES_USAGE =
  "usage: weir templates list | show NAME[@PIN] [--json] | new NAME DIR | lock | docs\n"

-- a value as Lua source (strings quoted, tables as constructors)
local function lua_literal(v)
  if type(v) == "string" then return format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  if getmetatable(v) == json.array_mt or #v > 0 then
    for i, x in ipairs(v) do parts[i] = lua_literal(x) end
  else
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = k .. " = " .. lua_literal(v[k]) end
  end
  return #parts == 0 and "{}" or "{ " .. concat(parts, ", ") .. " }"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function template_new(cat, load, name, dir)
  local e, ferr = cat:find(name, false)
  if not e then eprintf("weir templates new: %s\n", ferr); return 1 end
  local P = load(e)
  if not P then return 1 end
  local names = {}
  for n in pairs(P.def.params or {}) do names[#names + 1] = n end
  table.sort(names)
  local with = {}
  for _, n in ipairs(names) do
    local p = P.def.params[n]
    local v, note = p.examples and p.examples[1], p.default == nil and " -- required" or " -- default"
    if p.default ~= nil then v = p.default end
    if v == nil then
      v = require("weir.templates").blank(p.type)
      note = " -- required: fill in"
    end
    with[#with + 1] = format("%%s%s = %s,%s", n, lua_literal(v), note)
  end
  local tnames = {}
  for n in pairs(P.def.tasks) do tnames[#tnames + 1] = n end
  local major = P.def.template.version:match("^%d+")
  local body
  if #tnames == 1 then
    body = format("  tasks = {\n    %s = task {\n      uses = \"%s@%s\",\n      with = {\n%s\n      },\n"
                  .. "    },\n  },\n", e.name, e.name, major,
                  (concat(with, "\n"):gsub("%%s", "        ")))
  else
    body = format("  tasks = {\n    done = task { after = { \"%s\" }, run = function(ctx) "
                  .. "return ctx.inputs end },\n  },\n  include = {\n    %s = template(\"%s@%s\", "
                  .. "{\n%s\n    }),\n  },\n", e.name, e.name, e.name, major,
                  (concat(with, "\n"):gsub("%%s", "      ")))
  end
  local F = require("weir._ffi")
  F.C.weir_ffi_file_mkdir(dir, F.errbuf, F.errlen)
  local file = util.join(dir, e.name .. ".lua")
  local yaml = util.join(dir, "weir.yaml")
  if exists(file) then eprintf("weir templates new: %s exists\n", file); return 1 end
  local out = assert(io.open(file, "wb"))
  out:write(format("-- %s: %s\n-- (weir templates show %s; docs/templates.md)\n"
                   .. "return pipeline {\n  name = \"%s\",\n%s}\n", e.name, P.def.template.summary,
                   e.name, e.name, body))
  out:close()
  local had_yaml = exists(yaml)
  if not had_yaml then
    out = assert(io.open(yaml, "wb"))
    out:write("# weir.yaml: connections tasks reach with ctx.source/ctx.sink (docs/connectors.md)\n"
              .. "connections: {}\n"
              .. "#  warehouse:\n#    type: postgres\n#    url: postgres://app@localhost:5432/app\n"
              .. "#    password: ${env:PG_PASSWORD}\n"
              .. "# folders of the team's own templates, pinned in weir.lock (weir templates lock)\n"
              .. "# templates: [templates]\n")
    out:close()
  end
  io.write(format("wrote %s (uses %s@%s)%s\n", file, e.name, e.version,
                  had_yaml and "" or " and " .. yaml))
  return 0
end

command {
  name = "templates", args = { "list|show|new|lock|docs", "[NAME]", "[DIR]" }, raw = true,
  complete = { { "list", "show", "new", "lock", "docs" } },
  usage = { "list", "show NAME[@PIN] [--json]", "new NAME DIR", "lock", "docs" },
  summary = "the template library (docs/templates.md): list, describe one (--json: with its "
    .. "params' JSON Schema), start a pipeline from one, pin the weir.yaml templates folders' "
    .. "files in weir.lock, print docs/templates.md; run one whole with weir run "
    .. "template:NAME[@PIN] --param k=v",
  run = function(args)
  local sub, a1, a2 = args[1], args[2], args[3]
  if sub == "list" then
    return with_templates(function(cat, load)
      for _, e in ipairs(cat:list(true)) do
        local P = load(e)
        io.write(format("%-22s %-8s %-8s %s\n", e.name, e.version,
                        e.origin == "embedded" and "built-in" or "folder",
                        P and P.def.template.summary or "(does not load)"))
      end
      return 0
    end)
  elseif sub == "show" and a1 and (a2 == nil or a2 == "--json") then
    return with_templates(function(cat, load, templates)
      local e, err = cat:find(a1, false)
      if not e then eprintf("weir templates show: %s\n", err); return 1 end
      local P = load(e)
      if not P then return 1 end
      if a2 == "--json" then
        local m, tasks = P.def.template, setmetatable({}, json.array_mt)
        for n in pairs(P.def.tasks) do tasks[#tasks + 1] = n end
        table.sort(tasks)
        io.write(json.encode({ name = e.name, version = e.version, origin = e.origin,
                               sha256 = e.hash, summary = m.summary, description = m.description,
                               reads = m.reads, writes = m.writes, example = m.example,
                               tasks = tasks, params = templates.params_schema(P.def.params) }), "\n")
      else
        io.write(templates.describe(P, 1), "\n")
      end
      return 0
    end)
  elseif sub == "new" and a1 and a2 then
    return with_templates(function(cat, load) return template_new(cat, load, a1, a2) end)
  elseif sub == "lock" then
    return with_templates(function(cat)
      local path, n = cat:write_lock()
      if not path then eprintf("weir templates lock: %s\n", n); return 1 end
      io.write(format("%s: %d template%s pinned\n", path, n, n == 1 and "" or "s"))
      return 0
    end)
  elseif sub == "docs" then
    return with_templates(function(cat, load, templates)
      io.write("# Template library\n\n<!-- generated by `weir templates docs` from the "
               .. "templates' metadata; tests/e2e/templates_spec.lua fails when it is stale -->\n\n"
               .. "Reusable, tested pipelines embedded in `weir`. Use one as a whole pipeline "
               .. "(`weir run template:NAME --param k=v`), as one task (`task { uses = \"NAME@1\", "
               .. "with = { ... } }`) or as a group of tasks (`include = { g = template(\"NAME@1\", "
               .. "{ ... }) }`); [pipelines.md](pipelines.md#templates) says how.\n")
      for _, e in ipairs(cat:list(false)) do
        if e.origin == "embedded" then
          local P = load(e)
          if not P then return 1 end
          io.write("\n", templates.describe(P, 2), "\n")
        end
      end
      return 0
    end)
  end
  eprintf(TEMPLATES_USAGE)
  return 2
end,
}

-- weir init DIR: the files of a new project
local INIT_FILES = {
  { "weir.yaml", [[
# weir.yaml: connections tasks reach with ctx.source/ctx.sink, and settings
# (docs/connectors.md, docs/operations.md)
connections: {}
#  warehouse:
#    type: postgres
#    url: postgres://app@localhost:5432/app
#    password: ${env:PG_PASSWORD}
# folders of the team's own templates, pinned in weir.lock (weir templates lock)
# templates: [templates]
]] },
  { ".gitignore", ".weir/\nout/\ndead_letters/\n" },
  { "pipelines/data/orders.csv", "id,customer,amount\n1,ada,12.5\n2,grace,7\n3,ada,30\n" },
  { "pipelines/orders.lua", [[
-- An example pipeline: load data/orders.csv into a SQLite table, then sum
-- it per customer. Run it with `weir run pipelines/orders.lua`.
return pipeline {
  name = "orders",
  params = { min_amount = { type = "number", default = 0 } },
  tasks = {
    load = task {
      retries = 2,
      run = function(ctx)
        return ctx.csv("data/orders.csv", { types = { id = "integer", amount = "number" } })
          :filter(function(r) return r.amount >= ctx.params.min_amount end)
          :into(ctx.sqlite("out/orders.db"), "orders", { mode = "upsert", key = "id" })
      end,
    },
    totals = task {
      after = { "load" },
      run = function(ctx)
        return ctx.sqlite("out/orders.db"):rows(
          "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer ORDER BY customer")
      end,
    },
  },
}
]] },
  { "pipelines/orders_test.lua", [[
-- The example pipeline's test, beside it: `weir run pipelines/orders.lua
-- && weir run pipelines/orders_test.lua`.
return pipeline {
  name = "orders_test",
  tasks = {
    totals = task {
      run = function(ctx)
        local rows = ctx.sqlite("out/orders.db", { create = false }):rows(
          "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer ORDER BY customer")
        if #rows ~= 2 or rows[1].customer ~= "ada" or rows[1].total ~= 42.5 then
          ctx.fail("unexpected totals: " .. #rows .. " rows")
        end
        return "ok"
      end,
    },
  },
}
]] },
}

command {
  name = "init", args = { "DIR" }, raw = true, complete = { "file" },
  summary = "a new project: weir.yaml, an example pipeline and its test, .gitignore",
  run = function(args)
  if #args ~= 1 then eprintf("usage: weir init DIR\n"); return 2 end
  local dir = args[1]
  for _, f in ipairs(INIT_FILES) do
    if exists(util.join(dir, f[1])) then
      eprintf("weir init: %s exists; nothing written\n", util.join(dir, f[1]))
      return 1
    end
  end
  local F = require("weir._ffi")
  for _, f in ipairs(INIT_FILES) do
    local path = util.join(dir, f[1])
    local acc = path:sub(1, 1) == "/" and "" or "."
    for part in util.dirname(path):gmatch("[^/]+") do
      acc = acc .. "/" .. part
      F.C.weir_ffi_file_mkdir(acc, F.errbuf, F.errlen)
    end
    local out, err = io.open(path, "wb")
    if not out then eprintf("weir init: %s\n", tostring(err)); return 1 end
    out:write(f[2])
    out:close()
  end
  io.write(format("created %s: weir.yaml, pipelines/orders.lua and its test "
                  .. "pipelines/orders_test.lua, .gitignore\n  cd %s && weir run "
                  .. "pipelines/orders.lua && weir run pipelines/orders_test.lua\n", dir, dir))
  return 0
end,
}

command {
  name = "script", args = { "FILE", "[ARGS...]" }, raw = true, complete = { "file" },
  summary = "run a trusted Lua file with the runtime loaded",
  run = function(args)
  if #args < 1 then eprintf("usage: weir script FILE [ARGS...]\n"); return 2 end
  local file = args[1]
  local script_args = { [0] = file }
  for i = 2, #args do script_args[i - 1] = args[i] end
  _G.arg = script_args
  local fn, err = loadfile(file)
  if not fn then eprintf("weir script: %s\n", err); return 1 end
  local ok, res = xpcall(function() return fn(unpack(script_args)) end, debug.traceback)
  if not ok then eprintf("weir script: %s\n", tostring(res)); return 1 end
  io.stdout:flush()
  return type(res) == "number" and res or 0
  end,
}

command {
  name = "schema", args = { "pipeline|config" }, complete = { { "pipeline", "config" } },
  summary = "print the JSON Schema of pipeline files or of weir.yaml (for editors: "
    .. "docs/pipelines.md, Editors)",
  run = function(_, pos)
  local which = pos[1]
  if which ~= "pipeline" and which ~= "config" then
    eprintf("weir schema: got %q; usage: weir schema pipeline|config\n", which); return 2
  end
  io.write(require("weir._native").resource("weir/schemas/" .. which .. ".schema.json"))
  return 0
  end,
}

command {
  name = "stubs", args = {},
  summary = "print the LuaLS definitions of pipeline, task, ctx and streams (---@meta), "
    .. "for Lua editors",
  run = function()
  io.write(require("weir.stubs"))
  return 0
  end,
}

command {
  name = "version", args = {},
  summary = "print the version",
  run = function()
  io.write("weir ", M.VERSION, " (", jit and jit.version or _VERSION, ")\n")
  return 0
  end,
}

--- The whole of `weir help`.
function M.usage_text()
  return "usage: weir <command> [options]   (weir help COMMAND, weir COMMAND --help)\n\n"
         .. "commands:\n" .. require("weir.clidoc").overview(M.COMMANDS) .. "\n" .. M.TRAILER
end

command {
  name = "help", args = { "[COMMAND]" },
  summary = "this text, or a command's help",
  run = function(_, pos)
  if pos[1] then
    local def = M.COMMANDS[pos[1]]
    if not def then eprintf("weir help: unknown command %q\n", pos[1]); return 2 end
    io.write(require("weir.clidoc").command_help(def))
    return 0
  end
  io.write(M.usage_text())
  return 0
  end,
}

command {
  name = "completion", args = { "SHELL" }, complete = { { "bash", "zsh", "fish" } },
  summary = "print the completion script for bash, zsh or fish",
  help = "bash: `source <(weir completion bash)` in ~/.bashrc; zsh: `weir completion zsh > "
    .. "~/.zfunc/_weir` with ~/.zfunc in fpath; fish: `weir completion fish > "
    .. "~/.config/fish/completions/weir.fish`.",
  run = function(_, pos)
  local clidoc = require("weir.clidoc")
  if not clidoc.SHELLS[pos[1]] then
    eprintf("weir completion: expected bash, zsh or fish, got %q\n", pos[1]); return 2
  end
  io.write(clidoc.completion(pos[1], M.COMMANDS))
  return 0
  end,
}

command {
  name = "man", args = {},
  summary = "print the man page weir(1) (roff: `weir man | man -l -`)",
  run = function()
  local trailer = M.TRAILER
  local sections = {}
  for title, body in (trailer .. "\n"):gmatch("([%w ]+):[ ]*\n?(.-)\n\n") do
    sections[#sections + 1] = { title, body }
  end
  io.write(require("weir.clidoc").man(M.COMMANDS, M.VERSION, sections))
  return 0
  end,
}

--- Run the command def with args (the words after its name).
local function call(def, args)
  if def.raw then return def.run(args) end
  local clidoc = require("weir.clidoc")
  local o, pos = clidoc.parse(def, args)
  if not o then
    eprintf("weir %s: %s (weir %s --help)\n", def.name, pos, def.name)
    return 2
  end
  if o.help then io.write(clidoc.command_help(def)); return 0 end
  if o.verbose and o.quiet then
    eprintf("weir %s: -v and -q cannot be used together\n", def.name); return 2
  end
  -- one level: --log-level, else -v (debug) or -q (error); quiet below info
  o["log-level"] = o["log-level"] or (o.verbose and "debug") or (o.quiet and "error") or "info"
  o.quiet = o["log-level"] == "warn" or o["log-level"] == "error" or nil
  o.debug = o["log-level"] == "debug" or nil
  return def.run(o, pos)
end

--- Entry point: args is the process arg table; returns the exit code.
function M.main(args)
  local cmd = args[1]
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  if cmd == nil then io.stderr:write(M.usage_text()); return 2 end
  if cmd == "--help" or cmd == "-h" then cmd = "help" end
  if cmd == "--version" then cmd = "version" end
  local def = M.COMMANDS[cmd]
  if not def then
    eprintf("weir: unknown command %q (weir help lists them)\n", cmd)
    return 2
  end
  -- the store failing under a command is an operational error (a damaged
  -- or full disk), not weir's: say so, exit 3
  local ok, code = xpcall(call, function(e)
    if type(e) == "table" and e.code == "store" then return e end
    return debug.traceback(tostring(e), 2)
  end, def, rest)
  io.stdout:flush()
  if not ok then
    if type(code) == "table" then
      eprintf("weir: %s\n", util.printable(tostring(code)))
      return 3
    end
    eprintf("weir: internal error: %s\n", code)
    return 70
  end
  return code or 0
end

return M
