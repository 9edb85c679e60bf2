-- weir.cron: five-field cron expressions evaluated in a time zone's local
-- time (weir.tz), with the daylight-saving rules of docs/scheduling.md:
-- a local time the clocks jump over fires once, at the first instant
-- after the jump; a local time that happens twice fires once, at its
-- first occurrence.
--
-- The search skips by fields (month, day, hour, minute), never minute by
-- minute, and gives up after SEARCH_YEARS of local time (9: a 29 February
-- can be 8 years away, over a century not divisible by 400).
local tz = require("weir.tz")
local floor, format, concat = math.floor, string.format, table.concat
local days_from_civil, civil_from_days = tz.days_from_civil, tz.civil_from_days

local M = {}

M.SEARCH_YEARS = 9

local MACROS = {
  ["@yearly"] = "0 0 1 1 *", ["@annually"] = "0 0 1 1 *", ["@monthly"] = "0 0 1 * *",
  ["@weekly"] = "0 0 * * 0", ["@daily"] = "0 0 * * *", ["@midnight"] = "0 0 * * *",
  ["@hourly"] = "0 * * * *",
}

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8,
                 sep = 9, oct = 10, nov = 11, dec = 12 }
local WEEKDAYS = { sun = 0, mon = 1, tue = 2, wed = 3, thu = 4, fri = 5, sat = 6 }

local FIELDS = {
  { name = "minute", lo = 0, hi = 59 },
  { name = "hour", lo = 0, hi = 23 },
  { name = "day of month", lo = 1, hi = 31 },
  { name = "month", lo = 1, hi = 12, names = MONTHS },
  { name = "day of week", lo = 0, hi = 7, names = WEEKDAYS },
}

-- One field's text as a set { [v] = true }, or nil, message.
local function parse_field(text, f)
  local set = {}
  local function value(s)
    local n = s:match("^%d+$") and tonumber(s)
    if not n and f.names then n = f.names[s:lower()] end
    if not n then
      return nil, format("%s: %q is not a number%s", f.name, s,
                         f.names and " or a name" or "")
    end
    if n < f.lo or n > f.hi then
      return nil, format("%s: %d is out of range %d-%d", f.name, n, f.lo, f.hi)
    end
    return n
  end
  for part in (text .. ","):gmatch("([^,]*),") do
    if part == "" then return nil, format("%s: empty list item in %q", f.name, text) end
    local range, step = part:match("^([^/]+)/(.*)$")
    range = range or part
    local st = 1
    if step then
      st = step:match("^%d+$") and tonumber(step)
      if not st or st < 1 or st > f.hi then
        return nil, format("%s: bad step %q in %q", f.name, step, part)
      end
    end
    local a, b
    if range == "*" then
      a, b = f.lo, f.hi
      if f.name == "day of week" then b = 6 end
    else
      local x, y = range:match("^([^-]+)%-(.+)$")
      local err
      if x then
        a, err = value(x)
        if not a then return nil, err end
        b, err = value(y)
        if not b then return nil, err end
        if a > b then return nil, format("%s: range %q goes backwards", f.name, range) end
      else
        a, err = value(range)
        if not a then return nil, err end
        b = step and f.hi or a -- "5/15" is "5-max/15"
      end
    end
    for v = a, b, st do set[v] = true end
  end
  if f.name == "day of week" and set[7] then set[0], set[7] = true, nil end
  return set
end

-- nxt[v]: the smallest member >= v; prv[v]: the largest member <= v.
local function neighbours(set, lo, hi)
  local nxt, prv = {}, {}
  local cur
  for v = hi, lo, -1 do
    if set[v] then cur = v end
    nxt[v] = cur
  end
  cur = nil
  for v = lo, hi do
    if set[v] then cur = v end
    prv[v] = cur
  end
  return nxt, prv
end

local Schedule = {}
Schedule.__index = Schedule

--- Parse a cron expression: five fields (minute hour day-of-month month
-- day-of-week) or a macro. Returns a schedule or nil, message.
function M.parse(expr)
  if type(expr) ~= "string" then return nil, "expected a cron expression string" end
  local text = expr:match("^%s*(.-)%s*$")
  if text:sub(1, 1) == "@" then
    local m = MACROS[text:lower()]
    if not m then
      return nil, format("unknown cron macro %q (known: @hourly, @daily, @midnight, "
                         .. "@weekly, @monthly, @yearly, @annually)", text)
    end
    text = m
  end
  local parts = {}
  for p in text:gmatch("%S+") do parts[#parts + 1] = p end
  if #parts ~= 5 then
    return nil, format("expected 5 cron fields (minute hour day-of-month month day-of-week), "
                       .. "got %d in %q", #parts, expr)
  end
  local sets = {}
  for i, f in ipairs(FIELDS) do
    local set, err = parse_field(parts[i], f)
    if not set then return nil, err end
    sets[i] = set
  end
  local s = setmetatable({
    expr = expr, minute = sets[1], hour = sets[2], dom = sets[3], month = sets[4], dow = sets[5],
    -- Vixie cron: a field starting with "*" leaves the day unrestricted
    dom_star = parts[3]:sub(1, 1) == "*", dow_star = parts[5]:sub(1, 1) == "*",
  }, Schedule)
  s.min_next, s.min_prev = neighbours(s.minute, 0, 59)
  s.hour_next, s.hour_prev = neighbours(s.hour, 0, 23)
  -- a day-of-month no selected month has (with the weekday unrestricted)
  if not s.dom_star and s.dow_star then
    local possible = false
    for m in pairs(s.month) do
      local md = m == 2 and 29 or tz.month_days(2001, m)
      for d in pairs(s.dom) do if d <= md then possible = true end end
    end
    if not possible then
      return nil, format("day of month: %q never happens in month %q", parts[3], parts[4])
    end
  end
  return s
end

-- Whether the local day (day number, y, m, d) matches the day fields.
function Schedule:day_ok(day, d)
  local dom_ok, dow_ok = self.dom[d], self.dow[(day + 4) % 7]
  if self.dom_star or self.dow_star then return dom_ok and dow_ok end
  return dom_ok or dow_ok
end

-- The first matching local minute (minutes since the epoch, local time
-- read as UTC) at or after lm, or nil past limit (a day number).
function Schedule:next_local(lm, limit)
  local day, mod = floor(lm / 1440), lm % 1440
  local H, Mi = floor(mod / 60), mod % 60
  while day <= limit do
    local y, m, d = civil_from_days(day)
    if not self.month[m] then
      if m == 12 then y, m = y + 1, 1 else m = m + 1 end
      day, H, Mi = days_from_civil(y, m, 1), 0, 0
    elseif not self:day_ok(day, d) then
      day, H, Mi = day + 1, 0, 0
    else
      local h = self.hour_next[H]
      if not h then
        day, H, Mi = day + 1, 0, 0
      else
        if h ~= H then H, Mi = h, 0 end
        local mi = self.min_next[Mi]
        if mi then return day * 1440 + H * 60 + mi end
        H, Mi = H + 1, 0
        if H == 24 then day, H = day + 1, 0 end
      end
    end
  end
  return nil
end

-- The last matching local minute at or before lm, or nil before limit.
function Schedule:prev_local(lm, limit)
  local day, mod = floor(lm / 1440), lm % 1440
  local H, Mi = floor(mod / 60), mod % 60
  while day >= limit do
    local y, m, d = civil_from_days(day)
    if not self.month[m] then
      day, H, Mi = days_from_civil(y, m, 1) - 1, 23, 59
    elseif not self:day_ok(day, d) then
      day, H, Mi = day - 1, 23, 59
    else
      local h = self.hour_prev[H]
      if not h then
        day, H, Mi = day - 1, 23, 59
      else
        if h ~= H then H, Mi = h, 59 end
        local mi = self.min_prev[Mi]
        if mi then return day * 1440 + H * 60 + mi end
        H, Mi = H - 1, 59
        if H < 0 then day, H = day - 1, 23 end
      end
    end
  end
  return nil
end

--- The UTC instant at which local minute lm fires in zone: its first
-- occurrence, or, when the clocks jumped over it, the instant of the jump.
function M.fire_instant(zone, lm)
  local L = lm * 60
  local days = floor(lm / 1440)
  local y, m, d = civil_from_days(days)
  local mod = lm - days * 1440
  local inst = zone:local_to_utc(y, m, d, floor(mod / 60), mod % 60, 0)
  if inst[1] then return inst[1] end
  -- in a gap: the first instant whose local time is past L
  local lo, hi = L - 86400, L + 86400
  while hi - lo > 1 do
    local mid = floor((lo + hi) / 2)
    if mid + zone:offset_at(mid) > L then hi = mid else lo = mid end
  end
  return hi
end

local function local_minute(zone, t)
  return floor((floor(t) + zone:offset_at(t)) / 60)
end

local function none(self)
  return nil, format("cron %q: no fire time within %d years", self.expr, M.SEARCH_YEARS)
end

--- The next fire instant (UTC seconds) strictly after after_utc, in zone
-- (a weir.tz zone; UTC when nil). Returns nil, message when none comes
-- within SEARCH_YEARS.
function Schedule:next(after_utc, zone)
  zone = zone or tz.load("UTC")
  local lm = local_minute(zone, after_utc)
  local limit = floor(lm / 1440) + 366 * M.SEARCH_YEARS
  while true do
    local c = self:next_local(lm, limit)
    if not c then return none(self) end
    local t = M.fire_instant(zone, c)
    if t > after_utc then return t end
    lm = c + 1
  end
end

--- The latest fire instant at or before before_utc, or nil, message.
function Schedule:prev(before_utc, zone)
  zone = zone or tz.load("UTC")
  -- local minutes after before's may have fired earlier (an overlap)
  local lm = local_minute(zone, before_utc) + 180
  local limit = floor(lm / 1440) - 366 * M.SEARCH_YEARS
  while true do
    local c = self:prev_local(lm, limit)
    if not c then return none(self) end
    local t = M.fire_instant(zone, c)
    if t <= before_utc then return t end
    lm = c - 1
  end
end

--- The next n fire instants after after_utc (fewer when the search ends).
function Schedule:next_n(after_utc, zone, n)
  local out, t = {}, after_utc
  for i = 1, n do
    t = self:next(t, zone)
    if not t then break end
    out[i] = t
  end
  return out
end

function Schedule:__tostring()
  return "cron(" .. self.expr .. ")"
end

--- The sorted members of a field ("minute", "hour", "dom", "month", "dow").
function Schedule:values(field)
  local out = {}
  for v = 0, 59 do if self[field][v] then out[#out + 1] = v end end
  return out, concat(out, ",")
end

return M
