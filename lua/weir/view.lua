-- weir.view: what `weir run` shows while a run goes on.
--
-- On a terminal: a live table (state, elapsed, rows, rows/s per task,
-- redrawn ten times a second). Otherwise one plain line per state change,
-- or one JSON object per line with --log-format json.
local json = require("weir.json")
local util = require("weir.util")
local executor = require("weir.executor")
local format, concat = string.format, table.concat

local M = {}

local function ts() return os.date("!%H:%M:%S") end

-- the states an error explains
local FAILED = { failed = true, up_for_retry = true, upstream_failed = true, cancelled = true }

local function elapsed(t, mono)
  if not t.t0 then return 0 end
  return ((t.t1 or mono) - t.t0) / 1000
end

--- A view. mode: "live", "plain", "json" or "quiet"; out: file (stderr).
function M.new(mode, out)
  out = out or io.stderr
  local v = { interval = mode == "live" and 100 or 1000 }
  local last_draw, drawn_lines = 0, 0

  local function mark(t, state)
    local m = executor.mono()
    if state == "running" then t.t0 = m; t.t1 = nil
    elseif state ~= "queued" and state ~= "up_for_retry" then t.t1 = m end
  end

  if mode == "json" then
    function v.task(t, state)
      mark(t, state)
      -- an error only with the state it explains, this attempt's
      out:write(json.encode({ time = util.rfc3339(executor.now()), event = "task",
                              task = t.name, state = state, attempt = t.attempt,
                              error = FAILED[state] and t.error or nil }), "\n")
    end
    function v.finish(e)
      out:write(json.encode({ time = util.rfc3339(executor.now()), event = "run",
                              run_id = e.run_id, status = e.status }), "\n")
    end
  elseif mode == "plain" then
    function v.task(t, state)
      mark(t, state)
      if state == "running" then
        out:write(format("%s %-24s running (attempt %d)\n", ts(), t.name, t.attempt))
      elseif state == "success" then
        local rows = ""
        if (t.rows_in or 0) > 0 or (t.rows_out or 0) > 0 then
          rows = format(" rows in %d out %d", t.rows_in or 0, t.rows_out or 0)
        end
        out:write(format("%s %-24s success in %s%s\n", ts(), t.name,
                         util.human_duration(elapsed(t, executor.mono())), rows))
      elseif state ~= "queued" then
        out:write(format("%s %-24s %s%s\n", ts(), t.name, state,
                         t.error and (": " .. util.printable(t.error)) or ""))
      end
    end
  elseif mode == "live" then
    v.task = mark
    local paint = require("weir.color").painter(2)
    local function draw(e, final)
      local m = executor.mono()
      if not final and m - last_draw < 100 then return end
      last_draw = m
      local lines = {}
      local c = e.counts
      lines[1] = format("run %s  %s  %s  success %d  running %d  queued %d  failed %d",
                        e.run_id, e.P.name, util.human_duration((m - e.started) / 1000),
                        c.success, c.running, c.queued + c.up_for_retry,
                        c.failed + c.upstream_failed)
      local shown = 0
      for _, name in ipairs(e.order) do
        local t = e.T[name]
        if shown < 20 and (#e.order <= 20 or t.state == "running" or t.state == "failed") then
          shown = shown + 1
          local secs = elapsed(t, m)
          local rows = (t.rows_out or 0) > 0 and format("%d rows  %.0f rows/s", t.rows_out,
                                                        t.rows_out / math.max(secs, 1e-3)) or ""
          lines[#lines + 1] = format("  %-24s %s%s %8s  %s", name:sub(1, 24),
                                     paint(t.state, t.state),
                                     string.rep(" ", math.max(0, 16 - #t.state)),
                                     t.t0 and util.human_duration(secs) or "", rows)
        end
      end
      local buf = {}
      if drawn_lines > 0 then buf[1] = format("\27[%dA", drawn_lines) end
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
