-- weir.scheduler: which logical times of a schedule to fire now.
--
-- Pure: a schedule (P.schedule, normalized by weir.pipeline), its state in
-- the store ({ since, last_fire } in ms) and the time now (ms) give the
-- fires, oldest first, and the time of the next one; weir.serve records
-- each fire with its run in one transaction (store:fire), which refuses a
-- logical time fired before, so a fire happens once across restarts and
-- servers. Tests pass any now: the clock is the caller's.
--
-- Catch-up (what happens to fires missed while no server ran):
--   none    only a fire due within GRACE of now; older ones are skipped
--   latest  only the most recent due fire
--   all     every due fire, oldest first, at most max_catchup (the latest)
-- A schedule starts at `since` (when a server first saw it): a new
-- schedule never fires for times before it existed.
local cron = require("weir.cron")
local tz = require("weir.tz")

local M = {}

--- A fire due this long ago still counts as on time (ms): the loop looks
-- every second, and a busy step may delay it.
M.GRACE = 60000

local parsed = setmetatable({}, { __mode = "k" })

-- the parsed expression and the zone of sched (cached per table)
local function compiled(sched)
  local c = parsed[sched]
  if not c then
    c = { expr = assert(cron.parse(sched.cron)), zone = assert(tz.load(sched.timezone)) }
    parsed[sched] = c
  end
  return c.expr, c.zone
end

--- The fires of sched due at now (ms), given state { since, last_fire }:
-- returns fires (logical times in ms, oldest first), skip_to (ms: the
-- latest due time, fired or skipped, which last_fire moves to; nil when
-- nothing was due) and the next logical time after now (ms, or nil).
function M.plan(sched, state, now)
  local expr, zone = compiled(sched)
  local from = (state.last_fire or state.since) / 1000
  local now_s = now / 1000
  local cap = sched.max_catchup or 100
  -- the latest due times, newest first, walking back (bounded by cap)
  local due = {}
  local t = expr:prev(now_s, zone)
  while t and t > from and #due < cap do
    due[#due + 1] = t
    t = expr:prev(t - 1, zone)
  end
  local nxt = expr:next(now_s, zone)
  nxt = nxt and nxt * 1000
  if #due == 0 then return {}, nil, nxt end
  local latest = due[1] * 1000
  local fires = {}
  if sched.catchup == "all" then
    for i = #due, 1, -1 do fires[#fires + 1] = due[i] * 1000 end
  elseif sched.catchup == "latest" or now - latest <= M.GRACE then
    fires[1] = latest
  end
  return fires, latest, nxt
end

--- The next n logical times of sched after t (ms), as { utc = ms, local_
-- = "YYYY-MM-DD HH:MM:SS ZONE" } (weir schedules).
function M.upcoming(sched, t, n)
  local expr, zone = compiled(sched)
  local out = {}
  for i, s in ipairs(expr:next_n(t / 1000, zone, n)) do
    local y, mo, d, h, mi, se = tz.to_local(zone, s)
    local _, abbr = zone:offset_at(s)
    out[i] = { utc = s * 1000,
               ["local"] = string.format("%04d-%02d-%02d %02d:%02d:%02d %s", y, mo, d, h, mi, se,
                                         abbr or sched.timezone) }
  end
  return out
end

--- The logical times (ms) of sched from `from` to `to` (ms, both
-- included), oldest first, at most max of them; or nil, message.
function M.between(sched, from, to, max)
  local expr, zone = compiled(sched)
  local out = {}
  local t = expr:next(from / 1000 - 1, zone)
  while t and t * 1000 <= to do
    if #out >= max then
      return nil, string.format("more than %d logical times between the two instants", max)
    end
    out[#out + 1] = t * 1000
    t = expr:next(t, zone)
  end
  return out
end

--- Milliseconds of "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS]Z" (UTC), or nil.
function M.parse_time(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  local h, mi, se = 0, 0, 0
  if rest ~= "" then
    h, mi, se = rest:match("^T(%d%d):(%d%d):?(%d?%d?)Z$")
    if not h then return nil end
    se = se == "" and 0 or se
  end
  y, mo, d, h, mi, se = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi),
    tonumber(se)
  if mo < 1 or mo > 12 or d < 1 or d > tz.month_days(y, mo) or h > 23 or mi > 59 or se > 59 then
    return nil
  end
  local t = tz.load("UTC"):local_to_utc(y, mo, d, h, mi, se)
  return t and t[1] and t[1] * 1000
end

--- ISO 8601 UTC text of t (ms).
function M.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t / 1000))
end

return M
