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

M.USAGE = [[
usage: weir <command> [options]

commands:
  run FILE [--param k=v]... [--workers N] [--only TASK | --from TASK]
           [--log-format text|json] [--quiet] [--config FILE]
                         run a pipeline (.lua, .yaml, .yml or .json);
                         --workers defaults to the number of CPUs
  validate FILE [--json] check a pipeline; prints every error with its path
  runs [--json] [--limit N] [--pipeline NAME] [--server URL]
                         list recent runs (of weir serve with --server)
  show RUN_ID [--json] [--server URL]
                         a run: status, tasks, attempts, errors, logs, outputs
  resume RUN_ID [--workers N] [--log-format text|json] [--quiet] [--config FILE]
         [--force]       finish a run that was interrupted, re-running only
                         what did not succeed; --force takes over a run
                         whose recorded supervisor still looks alive
  health [--config FILE] [--json]
                         check the metadata store and every connection of
                         weir.yaml (latency, circuit breaker); exit 1 on failure
  serve [--listen ADDR:PORT] [--workers N] [--config FILE]
                         the HTTP service: many runs at once over one worker
                         pool (docs/api.md, docs/operations.md)
  trigger PIPELINE [--param k=v]... [--wait] [--json] [--server URL]
                         start a run on weir serve; --wait until it ends
                         (exit 0 when it succeeded)
  cancel RUN_ID [--server URL]
                         cancel a run on weir serve
  backfill PIPELINE --from T --to T [--max-active N] [--dry-run] [--rerun]
           [--server URL]
                         one run per scheduled interval in [T, T]
                         (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC), never
                         one already run unless --rerun; at most N of
                         them active at once
  schedules [pause|unpause PIPELINE] [--json] [--server URL]
                         weir serve's schedules: next five fires (local
                         and UTC), last fire; pause or unpause one
  users add NAME --role ROLE [--pipelines A,B] | users list | users disable NAME
                         people who may use the HTTP API (password read
                         from the terminal, or stdin); roles: viewer,
                         operator, developer, admin; --pipelines: only
                         these pipelines (default all)
  keys create NAME --role ROLE [--pipelines A,B] | keys list | keys revoke ID
                         API keys (shown once, stored hashed)
  templates list | show NAME [--json] | new NAME DIR | lock | docs
                         the template library (docs/templates.md): list,
                         describe one (--json: with its params' JSON
                         Schema), start a pipeline from one, pin the
                         weir.yaml templates folders' files in weir.lock,
                         print docs/templates.md; run one whole with
                         weir run template:NAME[@PIN] --param k=v
  init DIR               a new project: weir.yaml, an example pipeline and
                         its test, .gitignore
  script FILE [ARGS...]  run a trusted Lua file with the runtime loaded
  version                print the version
  help                   this text

configuration:
  weir.yaml in the current folder, or --config FILE, or WEIR_CONFIG: the
  connections tasks reach with ctx.source/ctx.sink (docs/connectors.md)

environment:
  WEIR_CONFIG        the configuration file (instead of ./weir.yaml)
  WEIR_HOME          state folder (default ./.weir): metadata store weir.db
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

exit codes: 0 success, 1 run failed or file invalid, 2 usage error,
  3 store or run not available, 130 cancelled (SIGINT), 143 (SIGTERM),
  129 (SIGHUP); weir serve: SIGTERM/SIGINT drain and stop, SIGHUP reloads
  the pipelines folders
]]

local function eprintf(...) io.stderr:write(format(...)) end

local function parse(args, spec)
  local o, pos = { params = {} }, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, val = a:match("^%-%-([%w%-]+)=(.*)$")
    name = name or a:match("^%-%-([%w%-]+)$")
    if name then
      local kind = spec[name]
      if not kind then return nil, "unknown option --" .. name end
      if kind == "flag" then
        o[name] = true
      else
        if not val then
          i = i + 1
          val = args[i]
          if val == nil then return nil, "option --" .. name .. " needs a value" end
        end
        if kind == "param" then
          local k, v = val:match("^([^=]+)=(.*)$")
          if not k then return nil, "--param expects k=v, got " .. val end
          o.params[k] = v
        elseif kind == "number" then
          o[name] = tonumber(val)
          if not o[name] then return nil, "--" .. name .. " expects a number" end
        else
          o[name] = val
        end
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return o, pos
end

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
    io.stderr:write(json.encode({ ts = require("weir.executor").now() / 1000,
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
  local secs = (require("weir.executor").mono() - e.started) / 1000
  eprintf("run %s %s in %s: %s\n", run_id, status, util.human_duration(secs), concat(parts, ", "))
  local shown = 0
  for _, t in ipairs(tasks) do
    if t.state == "failed" and shown < 10 then
      shown = shown + 1
      eprintf("  task %s failed after %d attempt(s): %s\n", t.task, t.attempts,
              util.printable(t.error or "?"))
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
  announce(o, r.resumed and "resumed" or "started", r.id, r.P.name)
  local status, xerr = r:execute(require("weir.view").new(view_mode(o)))
  if not status then
    eprintf("%s: %s\n", cmd, util.printable(xerr.message))
    r:close()
    return xerr.exit
  end
  if not o.quiet and o["log-format"] ~= "json" then summary(r:tasks(), r.id, status, r.engine) end
  r:close()
  return exit_code(status, r)
end

local commands = {}

function commands.run(args)
  local o, pos = parse(args, { param = "param", workers = "number", only = "string",
                               from = "string", ["log-format"] = "string", quiet = "flag",
                               config = "string" })
  if not o then eprintf("weir run: %s\n", pos); return 2 end
  if #pos ~= 1 then eprintf("usage: weir run FILE [options] (see weir help)\n"); return 2 end
  if o.workers and (o.workers < 1 or o.workers > 256) then
    eprintf("weir run: --workers must be 1..256\n"); return 2
  end
  if o.only and o.from then
    eprintf("weir run: --only and --from cannot be used together\n"); return 2
  end
  if o["log-format"] and o["log-format"] ~= "json" and o["log-format"] ~= "text" then
    eprintf("weir run: --log-format must be text or json\n"); return 2
  end
  return drive(require("weir.run").new({
    file = pos[1], params = o.params, workers = o.workers, only = o.only, from = o.from,
    config = o.config, warn = function(m) eprintf("%s\n", m) end,
  }), o, "weir run")
end

function commands.validate(args)
  local o, pos = parse(args, { json = "flag" })
  if not o or #pos ~= 1 then eprintf("usage: weir validate FILE\n"); return 2 end
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
  local n = 0
  for _ in pairs(P.tasks) do n = n + 1 end
  if o.json then
    io.write(json.encode({ valid = true, name = P.name, tasks = n }), "\n")
  else
    io.write(format("%s: valid (pipeline %s, %d task%s)\n", pos[1], P.name, n, n == 1 and "" or "s"))
  end
  return 0
end

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

function commands.runs(args)
  local o = parse(args, { json = "flag", limit = "number", pipeline = "string",
                          server = "string" })
  if not o then eprintf("usage: weir runs [--json] [--limit N]\n"); return 2 end
  local runs
  if o.server or os.getenv("WEIR_SERVER") then
    local q = "?limit=" .. (o.limit or 20)
    if o.pipeline then q = q .. "&pipeline=" .. require("weir.client").pct(o.pipeline) end
    local res, code = remote("weir runs", "GET", "/api/v1/runs" .. q, nil, o)
    if not res then return code end
    runs = res.runs
  else
    local store = open_store()
    if not store then return 3 end
    runs = store:runs(o.limit or 20, o.pipeline)
    store:close()
  end
  if o.json then
    local list = setmetatable({}, json.array_mt)
    for _, r in ipairs(runs) do
      list[#list + 1] = { id = r.id, pipeline = r.pipeline, status = r.status,
                          interrupted = require("weir.run").interrupted(r) or nil,
                          created_at = r.created_at, started_at = r.started_at,
                          finished_at = r.finished_at }
    end
    io.write(json.encode(list), "\n")
    return 0
  end
  if #runs == 0 then io.write("no runs yet\n"); return 0 end
  io.write(format("%-28s %-20s %-11s %-19s %s\n", "RUN", "PIPELINE", "STATUS", "STARTED (UTC)",
                  "DURATION"))
  for _, r in ipairs(runs) do
    local dur = r.finished_at and r.started_at
                and util.human_duration((r.finished_at - r.started_at) / 1000) or "-"
    local status = require("weir.run").interrupted(r) and "interrupted" or r.status
    io.write(format("%-28s %-20s %-11s %-19s %s\n", r.id, r.pipeline, status,
                    fmt_time(r.started_at or r.created_at), dur))
  end
  return 0
end

function commands.show(args)
  local o, pos = parse(args, { json = "flag", server = "string" })
  if not o or #pos ~= 1 then eprintf("usage: weir show RUN_ID [--json]\n"); return 2 end
  if o.server or os.getenv("WEIR_SERVER") then
    local res, code = remote("weir show", "GET", "/api/v1/runs/" .. require("weir.client").pct(pos[1]),
                             nil, o)
    if not res then return code end
    if o.json then io.write(json.encode(res), "\n"); return 0 end
    io.write(format("run %s of %s: %s\n", res.id, res.pipeline, res.status))
    for _, t in ipairs(res.tasks or {}) do
      io.write(format("  %-24s %-16s attempts %d%s\n", t.task, t.state, t.attempts or 0,
                      t.error and ("  " .. util.printable(t.error)) or ""))
    end
    return 0
  end
  local store = open_store()
  if not store then return 3 end
  local run = store:run(pos[1])
  if not run then store:close(); eprintf("weir show: no run %q\n", pos[1]); return 3 end
  local tasks, attempts = store:tasks(run.id), store:attempts(run.id)
  store:close()
  local by_task = {}
  for _, a in ipairs(attempts) do
    by_task[a.task] = by_task[a.task] or setmetatable({}, json.array_mt)
    local l = by_task[a.task]
    l[#l + 1] = a
  end
  if o.json then
    local list = setmetatable({}, json.array_mt)
    for _, t in ipairs(tasks) do
      t.output = t.output and json.decode(t.output) or nil
      t.attempt_list = by_task[t.task] or setmetatable({}, json.array_mt)
      for _, a in ipairs(t.attempt_list) do a.output = a.output and json.decode(a.output) end
      list[#list + 1] = t
    end
    run.params = json.decode(run.params)
    run.options = json.decode(run.options)
    run.interrupted = require("weir.run").interrupted(run) or nil
    run.tasks = list
    io.write(json.encode(run), "\n")
    return 0
  end
  local interrupted = require("weir.run").interrupted(run)
  io.write(format("run %s  pipeline %s  status %s\n", run.id, run.pipeline,
                  interrupted and "interrupted (its supervisor is gone: weir resume "
                  .. run.id .. " finishes it)" or run.status))
  if run.error then io.write("error: ", util.printable(run.error), "\n") end
  io.write(format("started %s  finished %s  params %s\n", fmt_time(run.started_at),
                  fmt_time(run.finished_at), util.printable(run.params)))
  local cause = require("weir.triggers").describe(run.options, run.logical_time
                                                 and require("weir.scheduler").iso(run.logical_time))
  if cause then io.write("trigger: ", util.printable(cause), "\n") end
  for _, t in ipairs(tasks) do
    local dur = t.finished_at and t.started_at
                and util.human_duration((t.finished_at - t.started_at) / 1000) or "-"
    io.write(format("  %-24s %-16s attempts %d  %s", t.task, t.state, t.attempts, dur))
    if (t.rows_out or 0) > 0 or (t.rows_in or 0) > 0 then
      io.write(format("  rows in %d out %d", t.rows_in, t.rows_out))
    end
    io.write("\n")
    if t.error then io.write("      error: ", util.printable(t.error), "\n") end
    if t.output and t.output ~= "null" then
      local s = t.output
      if #s > 200 then s = s:sub(1, 200) .. "..." end
      io.write("      output: ", util.printable(s), "\n")
    end
    for _, a in ipairs(by_task[t.task] or {}) do
      if a.status ~= "success" or (a.log and a.log ~= "") then
        io.write(format("      attempt %d %s%s\n", a.attempt, a.status,
                        a.error and (": " .. util.printable(a.error)) or ""))
        if a.log and a.log ~= "" then
          for line in (a.log .. "\n"):gmatch("(.-)\n") do
            io.write("        | ", util.printable(line), "\n")
          end
        end
      end
    end
  end
  return 0
end

function commands.resume(args)
  local o, pos = parse(args, { workers = "number", ["log-format"] = "string", quiet = "flag",
                               config = "string", force = "flag" })
  if not o or #pos ~= 1 then eprintf("usage: weir resume RUN_ID [--workers N]\n"); return 2 end
  return drive(require("weir.run").resume(pos[1], {
    workers = o.workers, config = o.config, force = o.force,
    warn = function(m) eprintf("%s\n", m) end,
  }), o, "weir resume")
end

--- weir health: the metadata store, then each connection of weir.yaml:
-- latency of a round trip and its circuit breaker. Exit 0 when all answer.
function commands.health(args)
  local o, pos = parse(args, { config = "string", json = "flag" })
  if not o or #pos ~= 0 then eprintf("usage: weir health [--config FILE] [--json]\n"); return 2 end
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
  if o.json then
    io.write(json.encode({ ok = not failed, checks = checks }), "\n")
  else
    for _, c in ipairs(checks) do
      io.write(format("%-4s %-9s %-16s %s%s%s\n", c.ok and "ok" or "FAIL", c.kind, c.name,
                      c.ok and format("%.2f ms", c.latency_ms) or util.printable(c.error),
                      c.breaker and ("  breaker " .. c.breaker) or "",
                      "  (" .. c.target .. ")"))
    end
  end
  return failed and 1 or 0
end

--- weir trigger: a run of PIPELINE on weir serve; --wait until it ends.
function commands.trigger(args)
  local o, pos = parse(args, { param = "param", wait = "flag", server = "string",
                               json = "flag" })
  if not o or #pos ~= 1 then
    eprintf("usage: weir trigger PIPELINE [--param k=v]... [--wait] [--server URL]\n"); return 2
  end
  local client = require("weir.client")
  local path = "/api/v1/pipelines/" .. client.pct(pos[1]) .. "/runs"
  local res, code = remote("weir trigger", "POST", path .. (o.wait and "?wait=300s" or ""),
                           { params = o.params }, o)
  if not res then return code end
  while o.wait and (res.status == "queued" or res.status == "running") do
    res, code = remote("weir trigger", "GET", "/api/v1/runs/" .. client.pct(res.id), nil, o)
    if not res then return code end
    if res.status == "queued" or res.status == "running" then
      require("weir.executor").sleep(500)
    end
  end
  if o.json then io.write(json.encode(res), "\n") else io.write(res.id, " ", res.status, "\n") end
  if o.wait then return res.status == "success" and 0 or 1 end
  return 0
end

--- weir backfill PIPELINE --from T --to T: runs over past intervals.
function commands.backfill(args)
  local o, pos = parse(args, { from = "string", to = "string", ["dry-run"] = "flag",
                               rerun = "flag", server = "string", ["max-active"] = "number" })
  if not o or #pos ~= 1 or not o.from or not o.to then
    eprintf("usage: weir backfill PIPELINE --from T --to T [--max-active N] [--dry-run] [--rerun] "
            .. "[--server URL]\n"); return 2
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
end

--- weir schedules [pause|unpause NAME]: the schedules of weir serve.
function commands.schedules(args)
  local o, pos = parse(args, { server = "string", json = "flag" })
  local client = require("weir.client")
  if o and (pos[1] == "pause" or pos[1] == "unpause") and #pos == 2 then
    local res, code = remote("weir schedules", "POST", "/api/v1/pipelines/" .. client.pct(pos[2])
                             .. "/schedule/" .. pos[1], nil, o)
    if not res then return code end
    io.write(format("%s %s\n", res.pipeline, res.paused and "paused" or "unpaused"))
    return 0
  end
  if not o or #pos ~= 0 then
    eprintf("usage: weir schedules [pause|unpause PIPELINE] [--json] [--server URL]\n"); return 2
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
end

--- weir cancel RUN_ID: cancel a run on weir serve.
function commands.cancel(args)
  local o, pos = parse(args, { server = "string" })
  if not o or #pos ~= 1 then eprintf("usage: weir cancel RUN_ID [--server URL]\n"); return 2 end
  local res, code = remote("weir cancel", "POST", "/api/v1/runs/"
                           .. require("weir.client").pct(pos[1]) .. "/cancel", nil, o)
  if not res then return code end
  io.write(res.id, " ", res.status, "\n")
  return 0
end

function commands.serve(args)
  local o, pos = parse(args, { listen = "string", workers = "number", config = "string" })
  if not o or #pos ~= 0 then
    eprintf("usage: weir serve [--listen ADDR:PORT] [--workers N] [--config FILE]\n"); return 2
  end
  if o.workers and (o.workers < 1 or o.workers > 256) then
    eprintf("weir serve: --workers must be 1..256\n"); return 2
  end
  return require("weir.serve").main({ listen = o.listen, workers = o.workers, config = o.config })
end

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
local function admin_command(args, usage)
  local o, pos = parse(args, { role = "string", pipelines = "string" })
  if not o or not pos[1] then eprintf(usage); return nil, 2 end
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

function commands.users(args)
  local usage = "usage: weir users add NAME --role ROLE | users list | users disable NAME\n"
  local o, pos, store = admin_command(args, usage)
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
end

function commands.keys(args)
  local usage = "usage: weir keys create NAME --role ROLE | keys list | keys revoke ID\n"
  local o, pos, store = admin_command(args, usage)
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
end

function commands.script(args)
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
end

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
      v = ({ string = "", integer = 0, number = 0, boolean = false })[p.type] or {}
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

function commands.templates(args)
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
end

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

function commands.init(args)
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
end

function commands.version()
  io.write("weir ", M.VERSION, " (", jit and jit.version or _VERSION, ")\n")
  return 0
end

function commands.help()
  io.write(M.USAGE)
  return 0
end

--- Entry point: args is the process arg table; returns the exit code.
function M.main(args)
  local cmd = args[1]
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  if cmd == nil or cmd == "--help" or cmd == "-h" then cmd = "help" end
  if cmd == "--version" then cmd = "version" end
  local f = commands[cmd]
  if not f then
    eprintf("weir: unknown command %q\n\n%s", cmd, M.USAGE)
    return 2
  end
  -- the store failing under a command is an operational error (a damaged
  -- or full disk), not weir's: say so, exit 3
  local ok, code = xpcall(f, function(e)
    if type(e) == "table" and e.code == "store" then return e end
    return debug.traceback(tostring(e), 2)
  end, rest)
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
