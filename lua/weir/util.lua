-- weir.util: small pure helpers shared by the supervisor and workers:
-- duration and size parsing, identifier checks, path handling.
local type, tonumber, floor = type, tonumber, math.floor
local format = string.format
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

--- A human form of a byte count: "64 MB".
function M.human_size(n)
  if n >= 1024 ^ 3 then return format("%.1f GB", n / 1024 ^ 3) end
  if n >= 1024 ^ 2 then return format("%.0f MB", n / 1024 ^ 2) end
  if n >= 1024 then return format("%.0f KB", n / 1024) end
  return format("%d B", n)
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
function M.show(v, n)
  n = n or 40
  local t = type(v)
  if t == "string" then
    if #v > n then v = v:sub(1, n) .. "..." end
    return format("%q", v):gsub("\\\n", "\\n")
  elseif t == "number" or t == "boolean" or t == "nil" then
    return tostring(v)
  elseif v == NULL then
    return "null" -- a YAML or JSON null (json.null)
  end
  return t
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
