-- weir.repl: `weir repl [PIPELINE_FILE]`, a Lua prompt whose code runs in
-- a task's sandbox (docs/repl.md, docs/adr/0045..0047).
--
-- The session is one worker of a pool of one, started and locked down as
-- every worker is, that keeps its Lua state between jobs (WEIR_JOB_KEEP):
-- this process reads input (libedit on a terminal, a script otherwise),
-- handles the meta-commands and sends each chunk to the session as a job,
-- with the session's memory cap and a deadline; the session evaluates it
-- and renders the result (weir._session). Ctrl-C interrupts the worker
-- (SIGINT: a hook raises in the chunk) and cancels the session's
-- PostgreSQL queries on the server; a chunk that does not stop within
-- a grace period has its worker killed, and the session starts afresh.
local F = require("weir._ffi")
local ffi = F.ffi
local executor = require("weir.executor")
local ser = require("weir._ser")
local json = require("weir.json")
local util = require("weir.util")
local pipeline = require("weir.pipeline")
local run = require("weir.run")
local native = require("weir._native")
local format, concat = string.format, table.concat

local M = {}

local KEEP = ffi.cast("uint64_t", 2 ^ 63)
local GRACE_MS = 3000

M.HELP = [[
Lua runs here as in a task: ctx.source("conn"):query("SELECT ..."), ctx.csv(path),
ctx.sqlite(path), ctx.params; variables live until .reset. An expression's value
is printed; a stream shows its first rows (.last shows them all).

  .help                      this text
  .load FILE                 load a pipeline: tasks.NAME() runs a task's function
  .validate [FILE]           check the pipeline (the loaded one by default)
  .tasks                     the loaded pipeline's tasks
  .run TASK [--param k=v]... [--input TASK=JSON]...
                             run one task for real (a recorded run); upstream
                             inputs from the latest successful run or --input
  .runs                      recent runs
  .show RUN_ID               a run: tasks, attempts, errors, logs
  .sql CONN QUERY            a query on a connection of weir.yaml
  .tables CONN               its tables
  .schema CONN TABLE         a table's columns
  .last                      the whole last result (through $PAGER on a terminal)
  .mode table|json|csv|jsonl how results are shown
  .timer on|off              elapsed time and rows/s after each command
  .output [FILE]             results to FILE (none: back to the screen)
  .reset                     a fresh session (variables dropped)
  .quit                      leave (also Ctrl-D)
Ctrl-C stops the running command and keeps the session.]]

local R = {}
R.__index = R

local function eprint(self, s) self.err:write(s, "\n") self.err:flush() end

-- The connections the session gets: weir.yaml's, each PostgreSQL one
-- tagged with this REPL's application_name (so Ctrl-C finds its queries).
local function session_connections(self)
  local out = {}
  for name, c in pairs(self.conf.connections) do
    local copy = {}
    for k, v in pairs(c) do copy[k] = v end
    if c.type == "postgres" then
      local opts = {}
      for k, v in pairs(c.options or {}) do opts[k] = v end
      opts.application_name = self.app_name
      copy.options = opts
    end
    out[name] = copy
  end
  return out
end

function R:start_pool()
  local exec, err = run.new_exec(1, self.roots, self.conf, self.file)
  if not exec then return nil, err end
  self.exec = exec
  self.base = ser.encode({ kind = "session", run_id = "repl", pipeline = self.pname or "repl",
                           task = "repl", attempt = 1, params = self.params,
                           base_dir = self.base_dir, roots = self.roots,
                           connections = session_connections(self) })
  return true
end

-- Cancel this session's statements on every PostgreSQL connection (from
-- this process, over a connection of its own).
function R:cancel_queries()
  for _, c in pairs(self.conf.connections) do
    if c.type == "postgres" then
      pcall(function()
        local h = require("weir.connectors.postgres").connect(c)
        h:all("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1 "
              .. "AND pid <> pg_backend_pid()", { self.app_name, n = 1 })
      end)
    end
  end
end

-- Send one operation to the session and wait for its result, with the
-- deadline; Ctrl-C interrupts. Returns the result table (status, ...).
function R:call(op, deadline_ms)
  self.killing = false
  op.mode, op.color, op.width = op.mode or self.mode, self.color, self.cols
  local ok, err = self.exec:sendv(0, KEEP + self.memory, { self.base, ser.encode(op) },
                                  { #self.base })
  if not ok then return { status = "failed", error = tostring(err) } end
  local t0 = executor.mono()
  local deadline = t0 + (deadline_ms or self.timeout)
  local interrupted_at, why
  while true do
    local evs, perr = self.exec:poll(100)
    if not evs then return { status = "failed", error = tostring(perr) } end
    for _, ev in ipairs(evs) do
      if ev.kind == "result" then
        local res = ev.result or { status = "failed", error = "unreadable result" }
        if why and res.status == "failed" then res.error = why end
        if res.fresh and self.started then
          res.note = "(the session had been reset: variables were lost)"
        end
        self.started = true
        return res
      elseif ev.kind == "exit" then
        self.started = false
        local msg = why or format("the session's worker died (%s)",
                                  ev.status < 0 and "signal " .. -ev.status or "exit " .. ev.status)
        if ev.status == -9 and not why then msg = "the session exceeded its memory or was killed" end
        return { status = "failed", error = msg .. "; a fresh session starts: variables were lost",
                 reset = true }
      elseif ev.kind == "signal" then
        if ev.status == 2 and not interrupted_at then
          why = "interrupted (Ctrl-C)"
          interrupted_at = executor.mono()
          F.C.weir_ffi_exec_interrupt(self.exec.h, 0)
          self:cancel_queries()
        elseif ev.status ~= 2 then
          self.quit = 128 + ev.status
          self.exec:kill(0)
        end
      end
    end
    local now = executor.mono()
    if now > deadline and not interrupted_at then
      why = format("the command exceeded its deadline of %s", util.human_duration(self.timeout / 1000))
      interrupted_at = now
      F.C.weir_ffi_exec_interrupt(self.exec.h, 0)
      self:cancel_queries()
    elseif interrupted_at and now - interrupted_at > GRACE_MS and not self.killing then
      self.killing = true
      self.exec:kill(0)
    end
  end
end

-- output ----------------------------------------------------------------

function R:write(text)
  if text == nil or text == "" then return end
  local out = self.out
  if out == io.stdout and self.tty_out then
    local lines = select(2, text:gsub("\n", "")) + 1
    local rows = native.edit.size()
    local pager = os.getenv("PAGER")
    if rows and lines >= rows - 1 and pager ~= "" then
      local p = io.popen(pager or "less -FRX", "w")
      if p then
        p:write(text, "\n")
        p:close()
        return
      end
    end
  end
  out:write(text, "\n")
  out:flush()
end

function R:report(res, t0)
  -- what the session shows passes the redaction of weir.yaml's secrets,
  -- as a task's errors, logs and outputs do
  local redact = self.conf.redact
  if res.printed and res.printed ~= "" then self:write(redact(res.printed)) end
  if res.status ~= "success" then
    eprint(self, self:red("error: ") .. redact(tostring(res.error)))
    if res.note then eprint(self, res.note) end
    self.failed = true
    return false
  end
  if res.note then eprint(self, res.note) end
  if res.text then self:write(redact(res.text)) end
  if self.timer and t0 then
    local secs = (executor.mono() - t0) / 1000
    local rows = res.rows_in or 0
    eprint(self, format("time %s%s", util.human_duration(secs),
                        rows > 0 and format(", %d rows read, %.0f rows/s", rows, rows / math.max(secs, 1e-6))
                        or ""))
  end
  return true
end

function R:red(s)
  if self.color then return "\27[31m" .. s .. "\27[0m" end
  return s
end

-- meta-commands --------------------------------------------------------

local function words(s)
  local out = {}
  for w in s:gmatch("%S+") do out[#out + 1] = w end
  return out
end

local meta = {}

function meta.help(self) self:write(M.HELP) return true end
function meta.quit(self) self.quit = 0 return true end

function meta.reset(self)
  self.exec:kill(0)
  self.exec:close()
  local ok, err = self:start_pool()
  if not ok then eprint(self, "error: " .. tostring(err)) return false end
  self.started = false
  if self.loaded then self:send_tasks() end
  self:write("(a fresh session)")
  return true
end

function meta.mode(self, arg)
  local m = arg:match("^%s*(%a+)%s*$")
  if m ~= "table" and m ~= "json" and m ~= "csv" and m ~= "jsonl" then
    eprint(self, "usage: .mode table|json|csv|jsonl")
    return false
  end
  self.mode = m
  return true
end

function meta.timer(self, arg)
  local v = arg:match("^%s*(%a+)%s*$")
  if v ~= "on" and v ~= "off" then eprint(self, "usage: .timer on|off") return false end
  self.timer = v == "on"
  return true
end

function meta.output(self, arg)
  local path = arg:match("^%s*(.-)%s*$")
  if self.out ~= io.stdout then self.out:close() end
  self.out = io.stdout
  if path == "" then return true end
  local f, err = io.open(path, "w")
  if not f then eprint(self, "error: " .. tostring(err)) return false end
  self.out = f
  return true
end

function meta.last(self)
  local parts = {}
  while true do
    local res = self:call({ op = "more", rows = 1000 })
    if res.status ~= "success" then return self:report(res) end
    if res.text ~= "" then parts[#parts + 1] = res.text end
    if res.done then break end
  end
  self:write(self.conf.redact(concat(parts, "\n")))
  return true
end

function R:send_tasks()
  local P = self.loaded
  local tasks = {}
  for name, t in pairs(P.tasks) do
    tasks[name] = { fn = t.fn and t.fn.blob, src = t.fn and t.fn.src }
  end
  return self:report(self:call({ op = "tasks", tasks = tasks }))
end

function meta.load(self, arg)
  local path = arg:match("^%s*(.-)%s*$")
  if path == "" then eprint(self, "usage: .load FILE") return false end
  local P, errs = pipeline.load(path)
  if not P then
    eprint(self, pipeline.format_errors(errs))
    return false
  end
  self.loaded, self.file = P, path
  local ok = self:send_tasks()
  if ok then
    local names = {}
    for n in pairs(P.tasks) do names[#names + 1] = n end
    table.sort(names)
    self:write(format("pipeline %s: tasks.%s", P.name, concat(names, ", tasks.")))
  end
  return ok
end

local function cli(self, args)
  io.stdout:flush()
  local code = require("weir.cli").main(args)
  return code == 0 or (self:report({ status = "failed", error = "exit " .. tostring(code) }) and false)
end

function meta.validate(self, arg)
  local path = arg:match("^%s*(.-)%s*$")
  if path == "" then path = self.file end
  if not path then eprint(self, "usage: .validate FILE (or .load one first)") return false end
  return cli(self, { "validate", path })
end

function meta.tasks(self)
  local P = self.loaded
  if not P then eprint(self, "no pipeline loaded (.load FILE)") return false end
  local rows = {}
  local names = {}
  for n in pairs(P.tasks) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    local t = P.tasks[n]
    rows[#rows + 1] = format("  %-24s after %s", n, #t.after > 0 and concat(t.after, ", ") or "-")
  end
  self:write(format("pipeline %s (%s)\n%s", P.name, P.file, concat(rows, "\n")))
  return true
end

function meta.runs(self) return cli(self, { "runs", "--limit", "10" }) end

function meta.show(self, arg)
  local id = arg:match("^%s*(%S+)%s*$")
  if not id then eprint(self, "usage: .show RUN_ID") return false end
  return cli(self, { "show", id })
end

-- The outputs of the latest successful attempt of each task in names,
-- from the runs of pipeline name in the store.
local function latest_outputs(name, names)
  local store = run.open_store()
  if not store then return {} end
  local out, want = {}, {}
  for _, n in ipairs(names) do want[n] = true end
  local ok = pcall(function()
    for _, r in ipairs(store:runs(50, name)) do
      for _, t in ipairs(store:tasks(r.id)) do
        if want[t.task] and not out[t.task] and t.state == "success" then out[t.task] = t.output end
      end
    end
  end)
  store:close()
  return ok and out or {}
end

function meta.run(self, arg)
  local P = self.loaded
  local w = words(arg)
  local task = table.remove(w, 1)
  if not P or not task then eprint(self, "usage: .run TASK [--param k=v] [--input TASK=JSON] "
                                         .. "(after .load FILE)") return false end
  if not P.tasks[task] then eprint(self, format("no task %q in %s", task, P.name)) return false end
  local params, inputs = {}, {}
  local i = 1
  while i <= #w do
    local flag, val = w[i], w[i + 1]
    local k, v = (val or ""):match("^([^=]+)=(.*)$")
    if (flag ~= "--param" and flag ~= "--input") or not k then
      eprint(self, "usage: .run TASK [--param k=v] [--input TASK=JSON]")
      return false
    end
    if flag == "--param" then params[k] = v
    else
      local okj = pcall(json.decode, v)
      if not okj then eprint(self, "--input " .. k .. ": not JSON") return false end
      inputs[k] = v
    end
    i = i + 2
  end
  local missing = {}
  for _, d in ipairs(P.tasks[task].after) do
    if not inputs[d] then missing[#missing + 1] = d end
  end
  if #missing > 0 then
    for k, v in pairs(latest_outputs(P.name, missing)) do inputs[k] = v end
  end
  local r = run.new({ file = self.file, params = params, workers = 1, only = task,
                      inputs = inputs, config = self.config })
  local ok, err = r:prepare()
  if not ok then r:close() eprint(self, "error: " .. tostring(err.message)) return false end
  local status, xerr = r:execute()
  if not status then r:close() eprint(self, "error: " .. tostring(xerr.message)) return false end
  local line = format("run %s: %s", r.id, status)
  for _, t in ipairs(r:tasks()) do
    if t.task == task then
      if t.output and t.output ~= "null" then line = line .. "\noutput: " .. t.output end
      if t.error then line = line .. "\nerror: " .. t.error end
    end
  end
  r:close()
  self:write(line)
  if status ~= "success" then self.failed = true end
  return status == "success"
end

function meta.sql(self, arg)
  local c, q = arg:match("^%s*(%S+)%s+(.-)%s*$")
  if not c then eprint(self, "usage: .sql CONN QUERY") return false end
  local t0 = executor.mono()
  return self:report(self:call({ op = "sql", conn = c, sql = q }), t0)
end

function meta.tables(self, arg)
  local c = arg:match("^%s*(%S+)%s*$")
  if not c then eprint(self, "usage: .tables CONN") return false end
  return self:report(self:call({ op = "tables", conn = c }))
end

function meta.schema(self, arg)
  local c, t = arg:match("^%s*(%S+)%s+(%S+)%s*$")
  if not c then eprint(self, "usage: .schema CONN TABLE") return false end
  return self:report(self:call({ op = "schema", conn = c, table = t }))
end

M.META = {}
for k in pairs(meta) do M.META[#M.META + 1] = "." .. k end
table.sort(M.META)

-- input -----------------------------------------------------------------

--- Whether chunk is an incomplete Lua chunk: LuaJIT's error is at <eof>
-- (an open block, call, long string or comment; a quoted string cannot
-- go on to the next line). Only compiled here, never run.
function M.incomplete(chunk)
  if load("return " .. chunk, "=repl", "t", {}) then return false end
  local fn, err = load(chunk, "=repl", "t", {})
  return not fn and err:find("near '<eof>'$") ~= nil
         and not err:find("unfinished string", 1, true)
end

-- Run one complete input: a meta-command or a Lua chunk. Returns true
-- when it succeeded.
function R:execute(chunk)
  local name, arg = chunk:match("^%s*%.(%a+)(.*)$")
  if name then
    local f = meta[name]
    if not f then
      eprint(self, format("unknown command .%s (.help lists them)", name))
      self.failed = true
      return false
    end
    local ok = f(self, arg)
    if not ok then self.failed = true end
    return ok
  end
  if chunk:match("^%s*$") then return true end
  local t0 = executor.mono()
  return self:report(self:call({ op = "eval", code = chunk }), t0)
end

-- History: WEIR_HOME/repl_history, one JSON string an entry (newlines of
-- a multi-line chunk kept), the last 1000 kept.
local HISTORY_MAX = 1000

function R:history_load()
  local path = pipeline.abspath(run.home()) .. "/repl_history"
  self.hist_path = path
  local f = io.open(path, "r")
  local entries = {}
  if f then
    for line in f:lines() do
      local ok, s = pcall(json.decode, line)
      if ok and type(s) == "string" then entries[#entries + 1] = s end
    end
    f:close()
  end
  if #entries > HISTORY_MAX then
    local keep = {}
    for i = #entries - HISTORY_MAX + 1, #entries do keep[#keep + 1] = entries[i] end
    entries = keep
    local w = io.open(path .. ".tmp", "w")
    if w then
      for _, e in ipairs(entries) do w:write(json.encode(e), "\n") end
      w:close()
      os.rename(path .. ".tmp", path)
    end
  end
  for _, e in ipairs(entries) do native.edit.add(e) end
end

function R:history_add(entry)
  if entry:match("^%s*$") then return end
  native.edit.add(entry)
  local f = io.open(self.hist_path, "a")
  if f then
    f:write(json.encode(entry), "\n")
    f:close()
  end
end

-- Tab: the session's candidates for the text before the cursor; returns
-- what to insert and the list to show when there are several.
function R:complete(before, line)
  local cands, start
  if before:match("^%.%a*$") then
    cands, start = M.META, 1
  else
    local res = self:call({ op = "complete", line = before, full = line }, 10000)
    if res.status ~= "success" then return "", nil end
    cands, start = res.candidates, res.start
  end
  local prefix = before:sub(start)
  local list = {}
  for _, c in ipairs(cands) do
    if c:sub(1, #prefix) == prefix or c:lower():sub(1, #prefix) == prefix:lower() then
      list[#list + 1] = c
    end
  end
  if #list == 0 then return "", nil end
  -- the longest common prefix of the candidates
  local lcp = list[1]
  for i = 2, #list do
    local c = list[i]
    local n = 0
    while n < #lcp and n < #c and lcp:sub(n + 1, n + 1):lower() == c:sub(n + 1, n + 1):lower() do
      n = n + 1
    end
    lcp = lcp:sub(1, n)
  end
  if #list == 1 then
    local ins = list[1]:sub(#prefix + 1)
    if ins == "" then return "", nil end
    return ins, nil
  end
  if #lcp > #prefix then return lcp:sub(#prefix + 1), nil end
  local shown = {}
  for i = 1, math.min(#list, 200) do shown[i] = list[i] end
  return "", concat(shown, "  ")
end

function R:interactive()
  local edit = native.edit
  edit.open(function(before, line)
    local ok, ins, show = pcall(self.complete, self, before, line)
    if not ok then return "", nil end
    return ins, show
  end)
  self:history_load()
  self.err:write(format("weir %s repl: .help for help, Ctrl-D to leave\n",
                        require("weir.cli").VERSION))
  local chunk
  while not self.quit do
    local line = edit.read(chunk and "...> " or "weir> ")
    local sig = executor.signal_pending()
    if sig ~= 0 and sig ~= 2 then
      -- SIGTERM, or SIGHUP: the terminal went away
      self.quit = 128 + sig
    elseif line == nil then
      if chunk then chunk = nil; self.err:write("\n") else break end
    elseif line == false then
      self.err:write("^C\n")
      chunk = nil
    else
      chunk = chunk and chunk .. "\n" .. line or line
      local is_meta = chunk:match("^%s*%.%a")
      if is_meta or not M.incomplete(chunk) then
        local c = chunk
        chunk = nil
        self:history_add(c)
        self:execute(c)
      end
    end
  end
  edit.close()
  if self.tty then self.err:write("\n") end
  return self.quit or 0
end

-- A script on stdin: each complete chunk evaluated in turn; the first
-- error ends it (exit 1).
function R:script()
  local chunk
  for line in io.stdin:lines() do
    chunk = chunk and chunk .. "\n" .. line or line
    if chunk:match("^%s*%.%a") or not M.incomplete(chunk) then
      local c = chunk
      chunk = nil
      if not self:execute(c) then return 1 end
      if self.quit then return self.quit end
    end
  end
  if chunk and not chunk:match("^%s*$") then
    self:execute(chunk)
    return 1
  end
  return 0
end

--- o: file (a pipeline to load), config, params (k = v), timeout (ms),
-- memory (bytes). Returns the exit code.
function M.main(o)
  executor.signal_install()
  local self = setmetatable({ out = io.stdout, err = io.stderr, mode = "table",
                              config = o.config, params = o.params or {},
                              timeout = o.timeout or 300000,
                              memory = o.memory or 1024 * 1024 * 1024 }, R)
  local conf, cerr = run.config(o.config, function(m) io.stderr:write(m, "\n") end)
  if not conf then io.stderr:write(cerr, "\n") return 1 end
  self.conf = conf
  self.app_name = "weir repl " .. executor.getpid()
  self.tty = F.C.weir_ffi_isatty(0) == 1
  self.tty_out = F.C.weir_ffi_isatty(1) == 1
  local no_color = os.getenv("NO_COLOR")
  self.color = self.tty_out and (no_color == nil or no_color == "")
  local _, cols = native.edit.size()
  self.cols = cols or 78
  self.base_dir = pipeline.abspath(o.file and util.dirname(pipeline.abspath(o.file)) or ".")
  self.roots = run.roots_for(self.base_dir)
  if o.file then
    local P, errs = pipeline.load(o.file)
    if not P then io.stderr:write(pipeline.format_errors(errs), "\n") return 1 end
    local params, perr = pipeline.resolve_params(P, o.params)
    if not params then io.stderr:write("weir repl: ", perr, "\n") return 2 end
    self.loaded, self.file, self.pname, self.params = P, o.file, P.name, params
  end
  local ok, err = self:start_pool()
  if not ok then io.stderr:write("weir repl: cannot start the session: ", tostring(err), "\n") return 3 end
  local code
  if self.loaded and not self:send_tasks() then
    code = 1
  elseif self.tty then
    code = self:interactive()
  else
    code = self:script()
  end
  if self.out ~= io.stdout then self.out:close() end
  self.exec:close()
  return code
end

return M
