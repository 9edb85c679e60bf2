-- weir.util: small pure helpers shared by the supervisor and workers:
-- duration and size parsing, identifier checks, path handling.
local type, tonumber, floor = type, tonumber, math.floor
local format, byte = string.format, string.byte
local NULL = require("weir._native").NULL

local M = {}

local DURATION_UNITS = { ms = 0.001, s = 1, m = 60, h = 3600, d = 86400 }
local SIZE_UNITS = {
  b = 1, kb = 1024, mb = 1024 ^ 2, gb = 1024 ^ 3,
  k = 1024, m = 1024 ^ 2, g = 1024 ^ 3,
  kib = 1024, mib = 1024 ^ 2, gib = 1024 ^ 3,
}

--- Seconds from "500ms", "30s", "5m", "2h", "1d", "1h30m" or a number of
-- seconds. Returns nil, message when the text is not a duration.
function M.duration(v)
  if type(v) == "number" then
    if v >= 0 then return v end
    return nil, "expected a duration >= 0"
  end
  if type(v) ~= "string" or v == "" then
    return nil, "expected a duration like \"500ms\", \"30s\" or \"2h\""
  end
  local total, rest = 0, v:lower()
  while rest ~= "" do
    local num, unit, tail = rest:match("^%s*(%d+%.?%d*)%s*(%a+)(.*)$")
    local scale = unit and DURATION_UNITS[unit]
    if not scale then
      return nil, format("expected a duration like \"500ms\", \"30s\" or \"2h\", got %q", v)
    end
    total = total + tonumber(num) * scale
    rest = tail
  end
  return total
end

--- Bytes from "64MB", "512KB", "1GB", "100B" or a number of bytes.
function M.size(v)
  if type(v) == "number" then
    if v >= 0 then return floor(v) end
    return nil, "expected a size >= 0"
  end
  if type(v) ~= "string" then
    return nil, "expected a size like \"64MB\""
  end
  local num, unit = v:lower():match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
  local scale = num and SIZE_UNITS[unit == "" and "b" or unit]
  if not scale then
    return nil, format("expected a size like \"64MB\", got %q", v)
  end
  return floor(tonumber(num) * scale)
end

--- The canonical form (symlinks resolved) of an existing path, or nil,
-- message (trusted side only).
function M.realpath(p)
  local F = require("weir._ffi")
  local buf = F.ffi.new("char[4096]")
  if F.C.weir_ffi_realpath(p, buf, 4096, F.errbuf, F.errlen) ~= 0 then
    return nil, F.errmsg()
  end
  return F.ffi.string(buf)
end

--- The names in directory path, sorted (trusted side only: the call goes
-- straight to the OS). Returns the list, or nil, message.
function M.list_dir(path)
  local F = require("weir._ffi")
  local size = 65536
  while true do
    local buf = F.ffi.new("char[?]", size)
    local rc = F.C.weir_ffi_dir_list(path, buf, size, F.errbuf, F.errlen)
    if rc == 0 then
      local out = {}
      for name in F.ffi.string(buf):gmatch("[^\n]+") do out[#out + 1] = name end
      table.sort(out)
      return out
    end
    if rc ~= F.C.WEIR_ELIMIT or size >= 64 * 1024 * 1024 then return nil, F.errmsg() end
    size = size * 4
  end
end

--- The number of keys of table t.
function M.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

--- A human form of a byte count: "64 MB".
function M.human_size(n)
  if n >= 1024 ^ 3 then return format("%.1f GB", n / 1024 ^ 3) end
  if n >= 1024 ^ 2 then return format("%.0f MB", n / 1024 ^ 2) end
  if n >= 1024 then return format("%.0f KB", n / 1024) end
  return format("%d B", n)
end

--- ms (since the epoch) as RFC 3339 UTC with milliseconds:
-- "2026-12-07T06:36:42.123Z"; nil gives nil. Every time in JSON that
-- weir prints has this form.
function M.rfc3339(ms)
  if not ms then return nil end
  local s = floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%03dZ", floor(ms - s * 1000))
end

--- A human form of seconds: "1.2s", "350ms", "2m05s".
function M.human_duration(s)
  if s < 1 then return format("%dms", floor(s * 1000 + 0.5)) end
  if s < 60 then return format("%.1fs", s) end
  if s < 3600 then return format("%dm%02ds", floor(s / 60), floor(s % 60)) end
  return format("%dh%02dm", floor(s / 3600), floor(s % 3600 / 60))
end

--- Join path parts with "/".
function M.join(a, b)
  if b:sub(1, 1) == "/" then return b end
  if a == "" or a == "." then return b end
  if a:sub(-1) == "/" then return a .. b end
  return a .. "/" .. b
end

--- Directory part of a path ("." when none).
function M.dirname(p)
  return p:match("^(.*)/[^/]*$") or "."
end

--- Lexically normalise an absolute path: drop ".", "" and resolve "..".
function M.normalize(p)
  local out = {}
  for part in p:gmatch("[^/]+") do
    if part == ".." then
      out[#out] = nil
    elseif part ~= "." then
      out[#out + 1] = part
    end
  end
  return "/" .. table.concat(out, "/")
end

--- A short string for a value in messages: strings quoted, cut to n chars.
--- The length of the valid UTF-8 sequence that starts at byte i of s (a
-- byte >= 0x80), or nil when it is not one (overlong, surrogate, past
-- U+10FFFF, cut short).
local function utf8_len_at(s, i)
  local c = byte(s, i)
  local n, min
  if c >= 0xC2 and c <= 0xDF then n, min = 1, 0x80
  elseif c >= 0xE0 and c <= 0xEF then n, min = 2, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then n, min = 3, 0x10000
  else return nil end
  local cp = c % (2 ^ (6 - n))
  for j = i + 1, i + n do
    local cc = byte(s, j)
    if not cc or cc < 0x80 or cc > 0xBF then return nil end
    cp = cp * 64 + cc - 0x80
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
  return n + 1
end
M.utf8_len_at = utf8_len_at

--- s safe to print on a terminal: control characters (C0 but newline and
-- tab, DEL, C1), and bytes that are not UTF-8, become \xHH. Text from
-- tasks (errors, logs, outputs) passes it before weir prints it, so a task
-- cannot move the cursor, clear lines or set the window title.
function M.printable(s)
  s = tostring(s)
  if not s:find("[%z\1-\8\11-\31\127-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = byte(s, i)
    if c >= 0x80 then
      local len = utf8_len_at(s, i)
      -- C1 controls (U+0080..U+009F) are UTF-8 but act on a terminal
      if len and not (c == 0xC2 and byte(s, i + 1) < 0xA0) then
        out[#out + 1] = s:sub(i, i + len - 1)
        i = i + len
      else
        out[#out + 1] = format("\\x%02x", c)
        i = i + 1
      end
    elseif (c < 0x20 and c ~= 10 and c ~= 9) or c == 0x7F then
      out[#out + 1] = format("\\x%02x", c)
      i = i + 1
    else
      local j = s:find("[%z\1-\8\11-\31\127-\255]", i) or n + 1
      out[#out + 1] = s:sub(i, j - 1)
      i = j
    end
  end
  return table.concat(out)
end

function M.show(v, n)
  n = n or 40
  local t = type(v)
  if t == "string" then
    if #v > n then v = v:sub(1, n) .. "..." end
    return M.printable((format("%q", v):gsub("\\\n", "\\n")))
  elseif t == "number" or t == "boolean" or t == "nil" then
    return tostring(v)
  elseif v == NULL then
    return "null" -- a YAML or JSON null (json.null)
  end
  return t
end

--- The name of names closest to name by edit distance, when it is close
-- enough to be a typo of it (at most a third of its letters differ), or
-- nil: for "did you mean" hints.
function M.closest(name, names)
  local best, best_d
  for _, c in ipairs(names) do
    -- Levenshtein distance, one row at a time
    local prev = {}
    for j = 0, #c do prev[j] = j end
    for i = 1, #name do
      local cur = { [0] = i }
      local a = name:byte(i)
      for j = 1, #c do
        local cost = a == c:byte(j) and 0 or 1
        cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      end
      prev = cur
    end
    local d = prev[#c]
    if not best_d or d < best_d then best, best_d = c, d end
  end
  if best and best_d <= math.max(1, math.floor(#name / 3)) then return best end
  return nil
end

--- The line of path in lines (path -> line, as validation errors and the
-- YAML decoder give them), or of its nearest prefix that has one
-- ("tasks.a.retries" -> "tasks.a" -> "tasks" -> ""); nil when none has.
function M.line_for(lines, path)
  if not lines then return nil end
  local p = path
  while true do
    if lines[p] then return lines[p] end
    if p == "" then return nil end
    p = p:match("^(.*)[%.%[][^%.%[]*$") or ""
  end
end

return M
