-- weir.view: what `weir run` shows while a run goes on.
--
-- On a terminal: a live table (state, elapsed, rows read and written,
-- rows/s, rejected rows per task, redrawn ten times a second), with the
-- tasks' log lines printed above it as they come. Otherwise one plain line
-- per state change and per log line, and a progress line per running task
-- at most every PROGRESS_EVERY ms; or the same as one JSON object per line
-- with --log-format json. Workers report rows at most once a second
-- (weir._attempt), so none of this costs a task any throughput.
local json = require("weir.json")
local util = require("weir.util")
local executor = require("weir.executor")
local format, concat = string.format, table.concat

local M = {}

-- off a terminal, a running task's rows at most this often (ms)
M.PROGRESS_EVERY = 5000

local function ts() return os.date("!%H:%M:%S") end

local function elapsed(t, mono)
  if not t.t0 then return 0 end
  return ((t.t1 or mono) - t.t0) / 1000
end

-- rows so far of a running or finished task: "12000 read  11990 written
-- 10 rejected  4000 rows/s" (parts with nothing left out)
local function rows_text(t, secs)
  local rin, rout, rej = t.rows_in or 0, t.rows_out or 0, t.rejected or 0
  if rin == 0 and rout == 0 and rej == 0 then return "" end
  local parts = {}
  if rin > 0 then parts[#parts + 1] = format("%d read", rin) end
  if rout > 0 then parts[#parts + 1] = format("%d written", rout) end
  if rej > 0 then parts[#parts + 1] = format("%d rejected", rej) end
  if secs and secs > 0 then
    parts[#parts + 1] = format("%.0f rows/s", math.max(rin, rout) / secs)
  end
  return concat(parts, "  ")
end
M.rows_text = rows_text

-- "retrying in 1.0s (attempt 2/3)"
local function retry_text(t)
  if not t.retry_in then return "" end
  return format("retrying in %.1fs (attempt %d/%d)", t.retry_in, t.next_attempt, t.max_attempts)
end
M.retry_text = retry_text

-- the states whose event carries the task's error (never a running or
-- queued one: that error belonged to an earlier attempt)
local WITH_ERROR = { failed = true, up_for_retry = true, upstream_failed = true,
                     cancelled = true }

--- A view. mode: "live", "plain", "json" or "quiet"; out: file (stderr);
-- progress_every: ms between progress reports off a terminal (5000).
function M.new(mode, out, progress_every)
  out = out or io.stderr
  local every = progress_every or M.PROGRESS_EVERY
  local v = { interval = mode == "live" and 100 or 1000 }
  local last_draw, drawn_lines = 0, 0

  local function mark(t, state)
    local m = executor.mono()
    if state == "running" then t.t0 = m; t.t1 = nil; t.last_shown = m
    elseif state ~= "queued" and state ~= "up_for_retry" then t.t1 = m end
  end

  -- a progress report is due for t (off a terminal)
  local function due(t)
    local m = executor.mono()
    if t.last_shown and m - t.last_shown < every then return false end
    t.last_shown = m
    return true
  end

  if mode == "json" then
    -- an event's error only with the state it explains, this attempt's
    local function event(o)
      o.time = util.rfc3339(executor.now())
      out:write(json.encode(o), "\n")
    end
    function v.task(t, state)
      mark(t, state)
      local o = { event = "task", task = t.name, state = state, attempt = t.attempt,
                  error = WITH_ERROR[state] and t.error or nil }
      if state == "up_for_retry" and t.retry_in then
        o.retry_in = math.floor(t.retry_in * 10 + 0.5) / 10
        o.next_attempt, o.max_attempts = t.next_attempt, t.max_attempts
      elseif state == "success" then
        o.rows_in, o.rows_out, o.rejected = t.rows_in, t.rows_out, t.rejected
      end
      event(o)
    end
    function v.progress(t, lines)
      for _, l in ipairs(lines or {}) do
        event({ event = "log", task = t.name, attempt = t.attempt, line = l })
      end
      if t.rows_in and due(t) then
        local secs = elapsed(t, executor.mono())
        event({ event = "progress", task = t.name, attempt = t.attempt, rows_in = t.rows_in,
                rows_out = t.rows_out, rejected = t.rejected,
                rows_per_s = secs > 0 and math.floor(math.max(t.rows_in, t.rows_out or 0)
                                                      / secs) or nil })
      end
    end
    function v.finish(e)
      event({ event = "run", run_id = e.run_id, status = e.status })
    end
  elseif mode == "plain" then
    function v.task(t, state)
      mark(t, state)
      if state == "running" then
        out:write(format("%s %-24s running (attempt %d)\n", ts(), t.name, t.attempt))
      elseif state == "success" then
        local rows = rows_text(t)
        out:write(format("%s %-24s success in %s%s\n", ts(), t.name,
                         util.human_duration(elapsed(t, executor.mono())),
                         rows ~= "" and "  " .. rows or ""))
      elseif state == "up_for_retry" then
        out:write(format("%s %-24s up_for_retry: %s; %s\n", ts(), t.name,
                         util.printable(t.error or "?"), retry_text(t)))
      elseif state ~= "queued" then
        out:write(format("%s %-24s %s%s\n", ts(), t.name, state,
                         t.error and WITH_ERROR[state] and (": " .. util.printable(t.error))
                         or ""))
      end
    end
    function v.progress(t, lines)
      for _, l in ipairs(lines or {}) do
        out:write(format("%s %-24s | %s\n", ts(), t.name, util.printable(l)))
      end
      if t.rows_in and due(t) then
        out:write(format("%s %-24s running  %s\n", ts(), t.name,
                         rows_text(t, elapsed(t, executor.mono()))))
      end
    end
  elseif mode == "live" then
    v.task = mark
    local paint = require("weir.color").painter(2)
    local pending = {}
    function v.progress(t, lines)
      for _, l in ipairs(lines or {}) do
        pending[#pending + 1] = format("%s | %s", t.name, util.printable(l))
      end
    end
    local function draw(e, final)
      local m = executor.mono()
      if not final and m - last_draw < 100 then return end
      last_draw = m
      local lines = {}
      local c = e.counts
      local behind = e.behind or 0
      lines[1] = format("run %s  %s  %s  success %d  running %d  queued %d  failed %d",
                        e.run_id, e.P.name, util.human_duration((m - e.started) / 1000),
                        c.success, c.running - behind, c.queued + c.up_for_retry + behind,
                        c.failed + c.upstream_failed)
      local shown = 0
      for _, name in ipairs(e.order) do
        local t = e.T[name]
        local state = t.behind and "queued" or t.state
        if shown < 20 and (#e.order <= 20 or state == "running" or state == "failed") then
          shown = shown + 1
          local secs = elapsed(t, m)
          local what = state == "up_for_retry" and retry_text(t)
                       or rows_text(t, t.t0 and secs or nil)
          lines[#lines + 1] = format("  %-24s %s%s %8s  %s", name:sub(1, 24),
                                     paint(state, state),
                                     string.rep(" ", math.max(0, 16 - #state)),
                                     t.t0 and not t.behind and util.human_duration(secs) or "",
                                     what)
        end
      end
      local buf = {}
      if drawn_lines > 0 then buf[1] = format("\27[%dA", drawn_lines) end
      -- log lines scroll above the table
      for _, l in ipairs(pending) do buf[#buf + 1] = "\27[2K" .. l .. "\n" end
      pending = {}
      for _, l in ipairs(lines) do buf[#buf + 1] = "\27[2K" .. l .. "\n" end
      out:write(concat(buf))
      drawn_lines = #lines
    end
    v.tick = function(e) draw(e, false) end
    v.finish = function(e) draw(e, true) end
  else
    v.task = mark
  end
  v.mode = mode
  return v
end

return M
