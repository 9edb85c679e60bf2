-- weir._attempt: one task attempt, inside a worker's fresh Lua state.
--
-- Rebuilds the task's run function from its serialised closure (or
-- compiles the YAML/JSON task's Lua text), builds a fresh sandbox and the
-- ctx, runs the task, checks its output (JSON-able, depth, cycles, size)
-- and returns the result record. Everything costly (FFI declarations,
-- connectors) is loaded only when a task asks for it, so a no-op attempt
-- stays in the tens of microseconds.
local xpcall, tostring, load, select, ipairs = xpcall, tostring, load, select, ipairs
local find, sub, gsub = string.find, string.sub, string.gsub
local getinfo = debug.getinfo
local concat = table.concat
local traceback = debug.traceback
local sandbox = require("weir.sandbox")
local ser = require("weir._ser")
local native = require("weir._native")
local stream = require("weir.stream")
local now, progress = native.now, native.progress

-- Progress reaches the supervisor as frames on the job socket (ADR 39):
-- rows so far at most once a second (a short attempt sends its result
-- alone, as before), and each log line as it is written (as many frames
-- at most as log_max allows lines).
local PROGRESS_EVERY = 1000

local M = {}

-- An error raised inside the trusted library (a bad argument to ctx.path,
-- to a stream method...) names the user's line that made the call, not a
-- line of weir/*.lua or none at all. When a tail call (`return
-- ctx.path(x)`) left no frame of the user's, it names the line where the
-- task's function starts. Called from the error handler, while the stack
-- is still there; errors raised by user code are left alone.
local function blame_user(msg, e, fn)
  if type(e) ~= "string" then return msg end
  -- already placed in the task's file (the library's error level did it,
  -- or ctx.fail); chunk names may hold spaces and colons ("f.yaml:tasks.a")
  local fi = getinfo(fn, "S")
  local own = fi.short_src
  if sub(msg, 1, #own + 1) == own .. ":" then return msg end
  local where, from_trusted = nil, false
  for level = 2, 60 do
    local info = getinfo(level, "Sl")
    if not info then break end
    if info.what ~= "C" then
      local trusted = sub(info.source, 1, 6) == "@weir/"
      if not trusted and not from_trusted then return msg end -- raised by user code
      from_trusted = true
      if not trusted and info.currentline > 0 then
        where = info.short_src .. ":" .. info.currentline .. ": "
        break
      end
    end
  end
  if not from_trusted then return msg end
  where = where or own .. ":" .. fi.linedefined .. ": "
  return where .. (gsub(msg, "^weir/[%w_/]+%.lua:%d+: ", "", 1))
end

--- Run the attempt described by job; returns the result table.
function M.run(job)
  -- the state was set up with the collector stopped (runtime/lstate.c);
  -- from here on (inputs decoded, the task run) it works as usual: first
  -- cycle when memory has doubled, which a no-op attempt never reaches
  collectgarbage("restart", -1)
  local started, mono0 = now()
  local logs, log_bytes, log_max, dropped = {}, 0, job.log_max or 65536, false
  -- datasets: the lineage entries the connectors add (weir.connectors)
  local stats = { rows_in = 0, rows_out = 0, rejected = 0, datasets = {} }
  -- rows taken by sinks so far (stats.rows_out counts a load once done)
  local flowed, last_sent, sent_logs = 0, mono0, 0
  local every = job.progress_every or PROGRESS_EVERY
  local function send(m)
    last_sent = m
    local out = stats.rows_out > flowed and stats.rows_out or flowed
    local lines
    if sent_logs < #logs then
      lines = {}
      for i = sent_logs + 1, #logs do lines[#lines + 1] = logs[i] end
      sent_logs = #logs
    end
    local text = ser.encode({ rows_in = stats.rows_in, rows_out = out,
                              rejected = stats.rejected, log = lines })
    if text then progress(text) end
  end
  stream.pulse = function(n)
    flowed = flowed + n
    local _, m = now()
    if m - last_sent >= every then send(m) end
  end
  -- held: kept for the stored log, not streamed (the failure's trace)
  local function log(line, held)
    if log_bytes + #line + 1 > log_max then
      dropped = true
      return
    end
    logs[#logs + 1] = line
    log_bytes = log_bytes + #line + 1
    if not held then send(select(2, now())) end
  end

  -- Encode the task's output: runtime/json.c (C, exact numbers, never
  -- calls metamethods) is the fast path; when it refuses a value, weir.json
  -- says what and where (ADR 44).
  local function encode_output(out, max)
    local text = require("weir._native").json_encode(out, max)
    if text then return text end
    return require("weir.json").encode(out, { max_bytes = max, max_depth = 32, name = "output" })
  end

  if job.seed then math.randomseed(job.seed) end
  local ctx, close_ctx, side = require("weir._ctx").new(job, log, stats)
  local env, by_name = sandbox.new(nil, log)

  local fn, err
  if job.fn then
    fn, err = ser.decode(job.fn, { builtins = by_name, env = env })
  else
    fn, err = load(job.src, job.chunkname, "t", env)
  end
  local res, declared
  if not fn then
    res = { status = "failed", kind = "load", error = tostring(err) }
  else
    local trace, raw, errv
    local ok, out = xpcall(fn, function(e)
      trace = traceback("", 2)
      errv = e
      raw = sandbox.describe_error(e)
      return blame_user(raw, e, fn)
    end, ctx)
    if ok and job.checks then
      -- the task's loads have committed: its declared checks run now, on
      -- what it wrote (weir.checks)
      local checks = require("weir.checks")
      local function call(c, dataset)
        local f, e
        local blob = job.check_fns and job.check_fns[c._i]
        if blob then
          f, e = ser.decode(blob, { builtins = by_name, env = env })
        else
          f, e = load(c.run, (job.chunkname or "=task") .. ".checks[" .. c._i .. "]", "t", env)
        end
        if not f then error(tostring(e), 0) end
        -- what a check reads is not the task's rows in
        local before = stats.rows_in
        local r = { pcall(f, ctx, dataset) }
        stats.rows_in = before
        if not r[1] then error(r[2], 0) end
        return unpack(r, 2, table.maxn(r))
      end
      declared = checks.declared(job.checks, side.io(), call)
      local why = checks.failure(declared)
      if why then
        res = { status = "failed", kind = "check", error = "checks failed: " .. why }
        -- a verdict on committed data: a retry would skip the load (its
        -- ledger row is there) and find the same
        if checks.final(declared) then res.retry = false end
      end
    end
    if res then -- luacheck: ignore 542 (the checks failed it, above)
    elseif ok then
      local text, eerr = "null", nil
      if out ~= nil then
        text, eerr = encode_output(out, job.output_max or 1048576)
      end
      if text then
        res = { status = "success", output = text }
      else
        res = { status = "failed", kind = "output", error = "task output: " .. tostring(eerr) }
      end
    else
      -- the cap was hit and that is what the task died of (the flag alone
      -- stays set after a memory error the task caught)
      local exceeded = select(4, native.memory()) and find(out, "not enough memory", 1, true)
      res = { status = "failed", kind = exceeded and "memory" or "error", error = out }
      -- a connector error no retry can cure (a syntax error, a stale
      -- attempt: transient false) fails the task at once
      if require("weir.errors").permanent(errv)
         or (stats.permanent and find(out, stats.permanent, 1, true)) then
        res.retry = false
      end
      if trace then log("error: " .. out .. trace, true) end
    end
  end
  -- what ctx.check found, then the declared checks: stored per attempt
  local found = side.opened() and side.io().attempt.check_results or {}
  for _, r in ipairs(declared or {}) do found[#found + 1] = r end
  if #found > 0 then res.checks = found end
  close_ctx()
  if dropped then logs[#logs + 1] = "[log truncated at " .. log_max .. " bytes]" end
  res.log = concat(logs, "\n")
  res.rows_in, res.rows_out, res.rejected = stats.rows_in, stats.rows_out, stats.rejected
  if #stats.datasets > 0 then res.lineage = stats.datasets end
  local _, peak = native.memory()
  res.mem_peak = peak
  res.started, res.finished = started, now()
  return res
end

return M
