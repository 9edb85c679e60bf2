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
                         a run: status, tasks, attempts, errors, logs, outputs,
                         check results
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
  backfill PIPELINE --from T --to T [--dry-run] [--rerun] [--server URL]
                         one run per scheduled interval in [T, T]
                         (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC), never
                         one already run unless --rerun
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
                     (http://HOST:PORT; --server overrides it)
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
  local check_rows = store:checks(run.id)
  store:close()
  local by_task = {}
  for _, a in ipairs(attempts) do
    by_task[a.task] = by_task[a.task] or setmetatable({}, json.array_mt)
    local l = by_task[a.task]
    l[#l + 1] = a
  end
  local views = require("weir.store").check_views(check_rows)
  for _, a in ipairs(attempts) do a.checks = views[a.task .. "\0" .. a.attempt] end
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
      if a.status ~= "success" or (a.log and a.log ~= "") or a.checks then
        io.write(format("      attempt %d %s%s\n", a.attempt, a.status,
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
                               rerun = "flag", server = "string" })
  if not o or #pos ~= 1 or not o.from or not o.to then
    eprintf("usage: weir backfill PIPELINE --from T --to T [--dry-run] [--rerun] "
            .. "[--server URL]\n"); return 2
  end
  local res, code = remote("weir backfill", "POST", "/api/v1/pipelines/"
                           .. require("weir.client").pct(pos[1]) .. "/backfill",
                           { from = o.from, to = o.to, dry_run = o["dry-run"] or nil,
                             rerun = o.rerun or nil }, o)
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
