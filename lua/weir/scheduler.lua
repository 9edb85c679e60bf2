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
local bit = require("bit")

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

--- The delay (ms) of the fire of sched at logical time lt (ms): with a
-- jitter of J seconds, a number in [0, J*1000) drawn from a hash of seed
-- (the pipeline's name) and lt, so that pipelines sharing a cron line
-- spread out, and every server and restart computes the same delay.
function M.delay(sched, seed, lt)
  local j = sched.jitter or 0
  if j <= 0 then return 0 end
  local h = bit.tobit(2166136261) -- FNV-1a, 32 bits (prime 2^24 + 403)
  local s = tostring(seed) .. "@" .. string.format("%.0f", lt)
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(bit.lshift(h, 24) + h * 403)
  end
  return (h % 4294967296) % math.max(1, math.floor(j * 1000))
end

--- The fires of sched due at now (ms), given state { since, last_fire }
-- and seed (the pipeline's name, for the jitter): returns fires (logical
-- times in ms, oldest first), skip_to (ms: the latest due time, fired or
-- skipped, which last_fire moves to; nil when nothing was due) and when to
-- look again (ms: the next logical time after now, or a jittered fire not
-- yet due). A logical time is due at lt + M.delay(sched, seed, lt).
function M.plan(sched, state, now, seed)
  local expr, zone = compiled(sched)
  local from = (state.last_fire or state.since) / 1000
  local now_s = now / 1000
  local cap = sched.max_catchup or 100
  -- the latest past logical times, newest first, walking back (bounded
  -- by cap)
  local due = {}
  local t = expr:prev(now_s, zone)
  while t and t > from and #due < cap do
    due[#due + 1] = t * 1000
    t = expr:prev(t - 1, zone)
  end
  local nxt = expr:next(now_s, zone)
  nxt = nxt and nxt * 1000
  if nxt then nxt = nxt + M.delay(sched, seed, nxt) end
  if #due == 0 then return {}, nil, nxt end
  local latest = due[1]
  local fires = {}
  if sched.catchup == "all" then
    -- in order; a fire whose delay has not passed holds back the ones
    -- after it
    for i = #due, 1, -1 do
      local at = due[i] + M.delay(sched, seed, due[i])
      if at > now then return fires, fires[#fires], math.min(at, nxt or at) end
      fires[#fires + 1] = due[i]
    end
    return fires, latest, nxt
  end
  local at = latest + M.delay(sched, seed, latest)
  if at > now then return {}, nil, math.min(at, nxt or at) end
  if sched.catchup == "latest" or now - at <= M.GRACE then fires[1] = latest end
  return fires, latest, nxt
end

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
  local h, mi, se, frac = 0, 0, 0, ""
  if rest ~= "" then
    h, mi, se, frac = rest:match("^T(%d%d):(%d%d):?(%d?%d?)(%.?%d*)Z$")
    if not h or frac == "." or (frac ~= "" and se == "") then return nil end
    se = se == "" and 0 or se
  end
  y, mo, d, h, mi, se = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi),
    tonumber(se)
  if mo < 1 or mo > 12 or d < 1 or d > tz.month_days(y, mo) or h > 23 or mi > 59 or se > 59 then
    return nil
  end
  local t = tz.load("UTC"):local_to_utc(y, mo, d, h, mi, se)
  -- a fraction of a second (RFC 3339 as weir writes it: .123) in ms
  local ms = frac ~= "" and math.floor(tonumber("0" .. frac) * 1000 + 0.5) or 0
  return t and t[1] and t[1] * 1000 + ms
end

--- ISO 8601 UTC text of t (ms).
function M.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t / 1000))
end

return M
