-- weir.tz: time zones from the system's tz database (TZif files under
-- /usr/share/zoneinfo, Debian's tzdata), never from the process's TZ.
--
-- A zone is read once (cached by name): the 64-bit section of a v2/v3
-- file (the 32-bit one of a v1 file), and the footer's POSIX TZ string
-- (e.g. "CET-1CEST,M3.5.0,M10.5.0/3"), which gives the offsets after the
-- last transition in the file. Trusted side only (it opens files).
-- docs/adr/0021-cron-and-time-zones.md says why weir reads TZif itself.
local floor, format, byte, sub = math.floor, string.format, string.byte, string.sub

local M = {}

M.root = "/usr/share/zoneinfo"

---------------------------------------------------------------------------
-- Civil dates (proleptic Gregorian, days since 1970-01-01)
---------------------------------------------------------------------------

--- Days since 1970-01-01 of the date y-m-d.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
M.days_from_civil = days_from_civil

--- y, m, d of a day count since 1970-01-01.
local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end
M.civil_from_days = civil_from_days

local function is_leap(y) return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 end
M.is_leap = is_leap

local MDAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
--- Days in month m of year y.
function M.month_days(y, m)
  if m == 2 and is_leap(y) then return 29 end
  return MDAYS[m]
end

--- Seconds since the epoch of a civil date-time read as UTC.
local function civil_seconds(y, m, d, H, Mi, S)
  return days_from_civil(y, m, d) * 86400 + H * 3600 + Mi * 60 + S
end
M.civil_seconds = civil_seconds

---------------------------------------------------------------------------
-- POSIX TZ strings (the TZif footer)
---------------------------------------------------------------------------

-- A zone abbreviation: letters, or anything but ">" within <...>.
local function parse_name(s, i)
  if sub(s, i, i) == "<" then
    local j = s:find(">", i + 1, true)
    if not j then return nil end
    return sub(s, i + 1, j - 1), j + 1
  end
  local name = s:match("^%a+", i)
  if not name or #name < 3 then return nil end
  return name, i + #name
end

-- [+-]hh[:mm[:ss]] as seconds; hours up to 167 (the v3 extension).
local function parse_hms(s, i)
  local sign, h, rest = s:match("^([+-]?)(%d+)()", i)
  if not h or tonumber(h) > 167 then return nil end
  local secs, j = tonumber(h) * 3600, rest
  local mm, r2 = s:match("^:(%d%d?)()", j)
  if mm then
    secs, j = secs + tonumber(mm) * 60, r2
    local ss, r3 = s:match("^:(%d%d?)()", j)
    if ss then secs, j = secs + tonumber(ss), r3 end
  end
  return sign == "-" and -secs or secs, j
end

-- A rule date: Jn, n or Mm.w.d, then an optional /time (default 02:00).
local function parse_rule(s, i)
  local r = {}
  local m, w, d, j = s:match("^M(%d+)%.(%d)%.(%d)()", i)
  if m then
    r.kind, r.m, r.w, r.d = "M", tonumber(m), tonumber(w), tonumber(d)
    if r.m < 1 or r.m > 12 or r.w < 1 or r.w > 5 or r.d > 6 then return nil end
  else
    local jn, j2 = s:match("^J(%d+)()", i)
    if jn then
      r.kind, r.n, j = "J", tonumber(jn), j2
      if r.n < 1 or r.n > 365 then return nil end
    else
      local n, j3 = s:match("^(%d+)()", i)
      if not n then return nil end
      r.kind, r.n, j = "N", tonumber(n), j3
      if r.n > 365 then return nil end
    end
  end
  r.time = 7200
  if sub(s, j, j) == "/" then
    local t, k = parse_hms(s, j + 1)
    if not t then return nil end
    r.time, j = t, k
  end
  return r, j
end

--- Parse a POSIX TZ string. Returns a rule table or nil, message.
function M.parse_posix(s)
  local bad = function() return nil, format("bad POSIX TZ string %q", s) end
  local r = {}
  local i
  r.std, i = parse_name(s, 1)
  if not r.std then return bad() end
  local off
  off, i = parse_hms(s, i)
  if not off then return bad() end
  r.std_off = -off
  if i > #s then return r end
  r.dst, i = parse_name(s, i)
  if not r.dst then return bad() end
  r.dst_off = r.std_off + 3600
  if i <= #s and sub(s, i, i) ~= "," then
    off, i = parse_hms(s, i)
    if not off then return bad() end
    r.dst_off = -off
  end
  if i > #s then -- no rule: the US rule POSIX implementations assume
    r.start = { kind = "M", m = 3, w = 2, d = 0, time = 7200 }
    r["end"] = { kind = "M", m = 11, w = 1, d = 0, time = 7200 }
    return r
  end
  if sub(s, i, i) ~= "," then return bad() end
  r.start, i = parse_rule(s, i + 1)
  if not r.start or sub(s, i, i) ~= "," then return bad() end
  r["end"], i = parse_rule(s, i + 1)
  if not r["end"] or i <= #s then return bad() end
  return r
end

-- Local seconds (since the epoch, read as UTC) at which rule r happens in
-- year y.
local function rule_local(r, y)
  local day
  if r.kind == "M" then
    local first = days_from_civil(y, r.m, 1)
    local wd1 = (first + 4) % 7
    local dom = 1 + (r.d - wd1 + 7) % 7 + (r.w - 1) * 7
    local md = M.month_days(y, r.m)
    while dom > md do dom = dom - 7 end
    day = first + dom - 1
  elseif r.kind == "J" then -- 1..365, 29 February never counted
    local n = r.n
    if is_leap(y) and n >= 60 then n = n + 1 end
    day = days_from_civil(y, 1, 1) + n - 1
  else -- 0..365, 29 February counted
    day = days_from_civil(y, 1, 1) + r.n
  end
  return day * 86400 + r.time
end

-- offset, abbreviation, is_dst of POSIX rule p at UTC instant t.
local function posix_at(p, t)
  if not p.dst then return p.std_off, p.std, false end
  local y = civil_from_days(floor((t + p.std_off) / 86400))
  local s = rule_local(p.start, y) - p.std_off
  local e = rule_local(p["end"], y) - p.dst_off
  local dst
  if s < e then dst = t >= s and t < e else dst = not (t >= e and t < s) end
  if dst then return p.dst_off, p.dst, true end
  return p.std_off, p.std, false
end

---------------------------------------------------------------------------
-- TZif files
---------------------------------------------------------------------------

local function be(s, i, n, signed)
  local v = 0
  for k = 0, n - 1 do v = v * 256 + byte(s, i + k) end
  if signed and byte(s, i) >= 128 then v = v - 2 ^ (8 * n) end
  return v
end

--- Parse the text of a TZif file. Returns a zone or nil, message.
function M.parse_tzif(data, name)
  local function bad(what) return nil, format("time zone %q: %s", name, what) end
  if #data < 44 or sub(data, 1, 4) ~= "TZif" then return bad("not a TZif file") end
  local version = byte(data, 5)
  local function header(at)
    if #data < at + 43 or sub(data, at, at + 3) ~= "TZif" then return nil end
    local c = {}
    for k = 0, 5 do c[k + 1] = be(data, at + 20 + 4 * k, 4) end
    return { isut = c[1], isstd = c[2], leap = c[3], time = c[4], type = c[5], char = c[6] }
  end
  local h = header(1)
  if not h then return bad("truncated header") end
  local tsize, at = 4, 45
  local function block_len(hh, ts)
    return hh.time * ts + hh.time + hh.type * 6 + hh.char + hh.leap * (ts + 4) + hh.isstd + hh.isut
  end
  if version >= 0x32 then -- '2', '3', ...: skip the 32-bit block
    at = at + block_len(h, 4)
    h = header(at)
    if not h then return bad("truncated v2 header") end
    tsize, at = 8, at + 44
  end
  local len = block_len(h, tsize)
  if #data < at + len - 1 then return bad("truncated data") end
  if h.type < 1 then return bad("no local time types") end
  local z = { name = name, trans = {}, idx = {}, types = {} }
  for k = 0, h.time - 1 do z.trans[k + 1] = be(data, at + k * tsize, tsize, true) end
  at = at + h.time * tsize
  for k = 0, h.time - 1 do
    z.idx[k + 1] = byte(data, at + k) + 1
    if z.idx[k + 1] > h.type then return bad("bad transition type") end
  end
  at = at + h.time
  local tt = at
  local chars = sub(data, at + h.type * 6, at + h.type * 6 + h.char - 1)
  for k = 0, h.type - 1 do
    local p = tt + k * 6
    local ai = byte(data, p + 5) + 1
    z.types[k + 1] = { off = be(data, p, 4, true), dst = byte(data, p + 4) ~= 0,
                       abbr = chars:match("^[^%z]*", ai) or "" }
  end
  at = at + len - h.time * tsize - h.time
  if version >= 0x32 then
    local footer = data:match("^\n([^\n]*)\n", at)
    if footer and footer ~= "" then
      local p, err = M.parse_posix(footer)
      if not p then return bad(err) end
      z.posix = p
    end
  end
  return setmetatable(z, M.Zone)
end

local Zone = {}
Zone.__index = Zone
M.Zone = Zone

--- offset (seconds east of UTC), abbreviation and is_dst at UTC instant t.
function Zone:offset_at(t)
  local trans = self.trans
  local n = #trans
  if n == 0 or t >= trans[n] then
    if self.posix then return posix_at(self.posix, t) end
    if n == 0 then
      local ty = self.types[1]
      return ty.off, ty.abbr, ty.dst
    end
  end
  if n == 0 or t < trans[1] then
    local ty = self.types[1]
    return ty.off, ty.abbr, ty.dst
  end
  local lo, hi = 1, n -- the last transition at or before t
  while lo < hi do
    local mid = floor((lo + hi + 1) / 2)
    if trans[mid] <= t then lo = mid else hi = mid - 1 end
  end
  local ty = self.types[self.idx[lo]]
  return ty.off, ty.abbr, ty.dst
end

--- The UTC instants at which the local time y-m-d H:M:S happens, sorted:
-- none (in a gap, the clocks jumped over it), one, or two (in an overlap,
-- the clocks went back over it).
function Zone:local_to_utc(y, m, d, H, Mi, S)
  local L = civil_seconds(y, m, d, H, Mi, S or 0)
  local seen, out = {}, {}
  for _, probe in ipairs({ -86400, -43200, 0, 43200, 86400 }) do
    local o = self:offset_at(L + probe)
    if not seen[o] then
      seen[o] = true
      local t = L - o
      if self:offset_at(t) == o then out[#out + 1] = t end
    end
  end
  table.sort(out)
  local uniq = {}
  for _, t in ipairs(out) do if uniq[#uniq] ~= t then uniq[#uniq + 1] = t end end
  return uniq
end

--- y, m, d, H, M, S, weekday (0 = Sunday) of UTC instant t in zone.
function M.to_local(zone, t)
  local l = floor(t) + zone:offset_at(t)
  local days = floor(l / 86400)
  local s = l - days * 86400
  local y, m, d = civil_from_days(days)
  return y, m, d, floor(s / 3600), floor(s % 3600 / 60), s % 60, (days + 4) % 7
end

---------------------------------------------------------------------------
-- Loading by name
---------------------------------------------------------------------------

local cache = {}

local UTC = setmetatable({ name = "UTC", trans = {}, idx = {},
                           types = { { off = 0, dst = false, abbr = "UTC" } } }, Zone)

local realpath = require("weir.util").realpath

--- Whether name has the shape of a tz database name ("Europe/Berlin",
-- "Etc/GMT+5", "UTC"): no absolute path, no "." or ".." component.
function M.valid_name(name)
  if type(name) ~= "string" or #name == 0 or #name > 255 then return false end
  for part in (name .. "/"):gmatch("([^/]*)/") do
    if not part:match("^[A-Za-z0-9_+%-][A-Za-z0-9_+%-.]*$") or part:match("^%.") then
      return false
    end
  end
  return true
end

--- The zone called name, or nil, message. "UTC" always loads.
function M.load(name)
  local z = cache[name]
  if z then return z end
  if name == "UTC" then cache[name] = UTC; return UTC end
  local unknown = format("unknown time zone %q", tostring(name))
  if not M.valid_name(name) then return nil, unknown end
  local root = realpath(M.root)
  local real = root and realpath(M.root .. "/" .. name)
  if not real or sub(real, 1, #root + 1) ~= root .. "/" then return nil, unknown end
  local f = io.open(real, "rb")
  if not f then return nil, unknown end
  local data = f:read(1024 * 1024) or ""
  f:close()
  if sub(data, 1, 4) ~= "TZif" then return nil, unknown end
  local zone, err = M.parse_tzif(data, name)
  if not zone then return nil, err end
  cache[name] = zone
  return zone
end

return M
