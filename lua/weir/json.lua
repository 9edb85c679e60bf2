-- weir.json - JSON (RFC 8259) that keeps structure, in Lua (numbers are
-- printed by runtime/numfmt.c through weir._native).
--
-- Decoded arrays carry `json.array_mt` (even empty ones), decoded objects are
-- plain tables, and JSON null is the sentinel `json.null`, so a value survives
-- decode -> encode unchanged ([] stays [], {} stays {}, null keeps its slot).
-- The encoder never runs user metamethods: it walks tables with next() and
-- rawget() only, sorts object keys, and reports the path of a bad value.
--
-- The explaining one of weir's two JSON implementations (ADR 44): for
-- configuration, the CLI, the API and the store, and to say what and where
-- when the fast one (runtime/json.c, weir._native.json_encode/json_decode:
-- task outputs and inputs, JSON lines, dead letters) refuses a value.
local byte, char, concat, find, format, gsub, sub =
  string.byte, string.char, table.concat, string.find, string.format,
  string.gsub, string.sub
local floor, huge = math.floor, math.huge
local sort = table.sort
local num_format = require("weir._native").num_format
local error, getmetatable, next, pcall, rawget, setmetatable, tonumber,
      tostring, type =
  error, getmetatable, next, pcall, rawget, setmetatable, tonumber,
  tostring, type

local M = {}

--- JSON null: the lightuserdata NULL, the very value runtime/json.c uses
-- and ctx.NULL (SQL NULL in rows), so every decoder and row agrees on it.
M.null = require("weir._native").NULL
local null = M.null

--- The metatable that marks a table as a JSON array.
M.array_mt = { __name = "json.array" }
local array_mt = M.array_mt

local DEFAULT_DECODE_DEPTH = 512
local DEFAULT_ENCODE_DEPTH = 64

-- Thrown inside the codec and turned into `nil, err` at the entry points.
local Failure = {}

local function fail(msg)
  error(setmetatable({ msg = msg }, Failure), 0)
end

local function catch(ok, a, ...)
  if ok then return a, ... end
  if getmetatable(a) == Failure then return nil, a.msg end
  error(a, 0) -- a bug, not bad input: keep the original error
end

---------------------------------------------------------------------------
-- Shared helpers
---------------------------------------------------------------------------

--- Classify a Lua value as a JSON kind without running metamethods.
-- Returns "null", "boolean", "number", "string", "array" (plus its length),
-- "object", or the Lua type name for values JSON cannot hold. A table is an
-- array when it has `json.array_mt` (length: its largest index key; a third
-- result describes a defect: a non-index key, or too sparse to encode), or
-- when its keys are exactly 1..n, n >= 1. nil counts as null.
function M.kind(v)
  local t = type(v)
  if t == "table" then
    if getmetatable(v) == array_mt then
      -- Holes read as null; a third result says what is wrong with it.
      local n, max, bad = 0, 0, nil
      local k = next(v)
      while k ~= nil do
        if type(k) == "number" and k >= 1 and k == floor(k) and k < huge then
          n = n + 1
          if k > max then max = k end
        else
          bad = "array has a non-index key"
        end
        k = next(v, k)
      end
      if not bad and max > 2 * n + 64 then bad = "array is too sparse" end
      return "array", max, bad
    end
    local n, max = 0, 0
    local k = next(v)
    while k ~= nil do
      if type(k) ~= "number" or k < 1 or k ~= floor(k) then return "object" end
      n = n + 1
      if k > max then max = k end
      k = next(v, k)
    end
    if n >= 1 and max == n then return "array", n end
    return "object"
  elseif v == nil or v == null then
    return "null"
  end
  return t
end
local kind = M.kind

--- Sorted string keys of a table, their count, and the first key that is
-- not a string (nil when there is none).
function M._keys(t)
  local names, n, odd = {}, 0, nil
  local k = next(t)
  while k ~= nil do
    if type(k) == "string" then
      n = n + 1
      names[n] = k
    elseif odd == nil then
      odd = k
    end
    k = next(t, k)
  end
  sort(names)
  return names, n, odd
end
local keys = M._keys

-- The shortest text that reads back as the same double (runtime/numfmt.c:
-- integers below 2^53 in full); nil for NaN and infinities. Negative zero
-- prints as "0", as it always has here.
local function format_number(x)
  if x == 0 then return "0" end
  return num_format(x)
end
M._format_number = format_number


--- The exact text of a json value read from PostgreSQL (the "weir.json"
-- userdata of connectors/pgcodec.c: a json or jsonb column's value, kept
-- as the server's text), or nil for any other value. Sinks write this
-- text as it is; M.encode embeds it.
local function text_of(v)
  if type(v) == "userdata" and getmetatable(v) == "weir.json" then return tostring(v) end
  return nil
end
M.text_of = text_of

-- Returns the position of the first byte that is not valid UTF-8, or nil.
local utf8_len_at = require("weir.util").utf8_len_at
local function utf8_invalid_at(s, init)
  local i = find(s, "[\128-\255]", init or 1)
  while i do
    local n = utf8_len_at(s, i)
    if not n then return i end
    i = find(s, "[\128-\255]", i + n)
  end
  return nil
end
M._utf8_invalid_at = utf8_invalid_at

---------------------------------------------------------------------------
-- Decoder
---------------------------------------------------------------------------

local text        -- the text being decoded
local max_depth   -- nesting limit for this call

local function where(pos)
  local line, line_start = 1, 1
  local i = find(text, "\n", 1, true)
  while i and i < pos do
    line, line_start = line + 1, i + 1
    i = find(text, "\n", i + 1, true)
  end
  return format("line %d column %d", line, pos - line_start + 1)
end

local function fail_at(pos, msg)
  fail(format("json: %s at %s", msg, where(pos)))
end

local function show_char(pos)
  local c = byte(text, pos)
  if not c then return "end of input" end
  if c < 32 or c > 126 then return format("byte 0x%02X", c) end
  return "'" .. char(c) .. "'"
end

local function skip_ws(pos)
  local c = byte(text, pos)
  if c ~= 32 and c ~= 10 and c ~= 13 and c ~= 9 then return pos end
  local _, e = find(text, "^[ \t\r\n]*", pos + 1)
  return e + 1
end

local escapes = {
  [34] = "\"", [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f",
  [110] = "\n", [114] = "\r", [116] = "\t",
}

local function utf8_char(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then
    return char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
  end
  if cp < 0x10000 then
    return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64,
                0x80 + cp % 64)
  end
  return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
              0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end
M._utf8_char = utf8_char

local function read_hex4(pos)
  local h = sub(text, pos, pos + 3)
  if not find(h, "^%x%x%x%x$") then
    fail_at(pos - 2, "invalid unicode escape")
  end
  return tonumber(h, 16)
end

-- Characters that end a run of plain string bytes.
local STRING_SPECIAL = "[%z\1-\31\"\\]"

-- pos is at the opening quote; returns the string and the position after it.
local function decode_string(pos)
  local i = pos + 1
  local e = find(text, STRING_SPECIAL, i)
  if e and byte(text, e) == 34 then -- fast path: no escapes
    return sub(text, i, e - 1), e + 1
  end
  local parts, n = {}, 0
  while true do
    if not e then fail_at(pos, "unterminated string") end
    if e > i then
      n = n + 1
      parts[n] = sub(text, i, e - 1)
    end
    local c = byte(text, e)
    if c == 34 then
      return concat(parts), e + 1
    elseif c == 92 then
      local x = byte(text, e + 1)
      if x == 117 then -- \uXXXX
        local cp = read_hex4(e + 2)
        i = e + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          if sub(text, i, i + 1) ~= "\\u" then
            fail_at(e, "lone surrogate in unicode escape")
          end
          local lo = read_hex4(i + 2)
          if lo < 0xDC00 or lo > 0xDFFF then
            fail_at(e, "lone surrogate in unicode escape")
          end
          cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
          i = i + 6
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          fail_at(e, "lone surrogate in unicode escape")
        end
        n = n + 1
        parts[n] = utf8_char(cp)
      else
        local r = x and escapes[x]
        if not r then
          if not x then fail_at(pos, "unterminated string") end
          fail_at(e, "invalid escape " .. show_char(e + 1))
        end
        n = n + 1
        parts[n] = r
        i = e + 2
      end
    else
      fail_at(e, "control character in string")
    end
    e = find(text, STRING_SPECIAL, i)
  end
end

local function decode_number(pos)
  local _, e = find(text, "^-?%d+", pos)
  if not e then fail_at(pos, "invalid number") end
  local first = byte(text, pos) == 45 and pos + 1 or pos
  if byte(text, first) == 48 and e > first then
    fail_at(pos, "invalid number (leading zero)")
  end
  local c = byte(text, e + 1)
  if c == 46 then -- fraction
    local _, fe = find(text, "^%d+", e + 2)
    if not fe then fail_at(pos, "invalid number") end
    e = fe
    c = byte(text, e + 1)
  end
  if c == 101 or c == 69 then -- exponent
    local _, xe = find(text, "^[-+]?%d+", e + 2)
    if not xe then fail_at(pos, "invalid number") end
    e = xe
  end
  return tonumber(sub(text, pos, e)), e + 1
end

local decode_value

local function decode_array(pos, depth)
  if depth > max_depth then
    fail_at(pos, "nesting deeper than " .. max_depth)
  end
  local arr, n = {}, 0
  pos = skip_ws(pos + 1)
  if byte(text, pos) == 93 then
    return setmetatable(arr, array_mt), pos + 1
  end
  while true do
    local v
    v, pos = decode_value(pos, depth)
    n = n + 1
    arr[n] = v
    pos = skip_ws(pos)
    local c = byte(text, pos)
    if c == 93 then return setmetatable(arr, array_mt), pos + 1 end
    if c ~= 44 then
      fail_at(pos, "expected ',' or ']'")
    end
    pos = skip_ws(pos + 1)
  end
end

local function decode_object(pos, depth)
  if depth > max_depth then
    fail_at(pos, "nesting deeper than " .. max_depth)
  end
  local obj = {}
  pos = skip_ws(pos + 1)
  if byte(text, pos) == 125 then return obj, pos + 1 end
  while true do
    if byte(text, pos) ~= 34 then
      fail_at(pos, "expected string key")
    end
    local k
    k, pos = decode_string(pos)
    pos = skip_ws(pos)
    if byte(text, pos) ~= 58 then
      fail_at(pos, "expected ':'")
    end
    local v
    v, pos = decode_value(skip_ws(pos + 1), depth)
    obj[k] = v
    pos = skip_ws(pos)
    local c = byte(text, pos)
    if c == 125 then return obj, pos + 1 end
    if c ~= 44 then
      fail_at(pos, "expected ',' or '}'")
    end
    pos = skip_ws(pos + 1)
  end
end

-- pos is at the first byte of a value (whitespace already skipped).
decode_value = function(pos, depth)
  local c = byte(text, pos)
  if c == 34 then return decode_string(pos) end
  if c == 123 then return decode_object(pos, depth + 1) end
  if c == 91 then return decode_array(pos, depth + 1) end
  if c == 45 or (c and c >= 48 and c <= 57) then return decode_number(pos) end
  if c == 116 and sub(text, pos, pos + 3) == "true" then return true, pos + 4 end
  if c == 102 and sub(text, pos, pos + 4) == "false" then
    return false, pos + 5
  end
  if c == 110 and sub(text, pos, pos + 3) == "null" then return null, pos + 4 end
  if not c then fail_at(pos, "unexpected end of input") end
  fail_at(pos, "unexpected " .. show_char(pos))
end

local function decode(s, depth_limit)
  text, max_depth = s, depth_limit
  local pos = 1
  if sub(s, 1, 3) == "\239\187\191" then pos = 4 end -- RFC 8259 8.1: BOM
  local bad = utf8_invalid_at(s, pos)
  if bad then fail_at(bad, "invalid utf-8") end
  local v
  v, pos = decode_value(skip_ws(pos), 0)
  pos = skip_ws(pos)
  if pos <= #s then fail_at(pos, "unexpected " .. show_char(pos) .. " after value") end
  return v
end

--- Decode JSON text.
-- Returns the value, or nil and an error naming what and where
-- ("json: expected ':' at line 3 column 7"). Options:
-- `max_depth` (nesting limit, default 512).
function M.decode(s, opts)
  if type(s) ~= "string" then
    error("json.decode: bad 'text' (string expected, got " .. type(s) .. ")", 2)
  end
  local depth = DEFAULT_DECODE_DEPTH
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("json.decode: bad 'opts' (table expected, got " .. type(opts) .. ")", 2)
    end
    if opts.max_depth ~= nil then
      depth = opts.max_depth
      if type(depth) ~= "number" or depth < 1 then
        error("json.decode: bad 'opts.max_depth' (positive number expected)", 2)
      end
    end
  end
  local ok, v, err = pcall(decode, s, depth)
  text = nil
  return catch(ok, v, err)
end

---------------------------------------------------------------------------
-- Encoder
---------------------------------------------------------------------------

local quote

local function is_identifier(k)
  return find(k, "^[%a_][%w_]*$") ~= nil
end

-- Renders an encoder path from the stack of keys.
local function path_string(root, stack, depth)
  local parts = { root }
  for i = 1, depth do
    local k = stack[i]
    local t = type(k)
    if t == "number" then
      parts[#parts + 1] = "[" .. (format_number(k) or tostring(k)) .. "]"
    elseif t == "string" then
      parts[#parts + 1] = is_identifier(k) and "." .. k or "[" .. quote(k) .. "]"
    elseif t == "boolean" then
      parts[#parts + 1] = "[" .. tostring(k) .. "]"
    else
      parts[#parts + 1] = "[" .. t .. "]" -- never tostring(): no metamethods
    end
  end
  return concat(parts)
end

local escape_map = {
  ["\""] = "\\\"", ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
for i = 0, 31 do
  local c = char(i)
  if not escape_map[c] then escape_map[c] = format("\\u%04x", i) end
end

quote = function(s)
  if find(s, "[%z\1-\31\"\\]") then
    s = gsub(s, "[%z\1-\31\"\\]", escape_map)
  end
  return "\"" .. s .. "\""
end
M._quote = quote

local Encoder = {}
Encoder.__index = Encoder

function Encoder:fail(msg)
  fail(format("json: %s at %s", msg, path_string(self.root, self.stack, self.depth)))
end

function Encoder:emit(s)
  local n = self.n + 1
  self.n = n
  self.buf[n] = s
  local size = self.size + #s
  self.size = size
  if size > self.max_bytes then
    fail(format("json: output exceeds %d bytes", self.max_bytes))
  end
end

function Encoder:string(s)
  if utf8_invalid_at(s) then self:fail("invalid utf-8 in string") end
  self:emit(quote(s))
end

function Encoder:value(v)
  local t = type(v)
  if t == "string" then
    self:string(v)
  elseif t == "number" then
    local s = format_number(v)
    if not s then
      self:fail("cannot encode number " .. (v ~= v and "NaN" or v > 0 and "inf" or "-inf"))
    end
    self:emit(s)
  elseif t == "boolean" then
    self:emit(v and "true" or "false")
  elseif v == nil or v == null then
    self:emit("null")
  elseif t == "table" then
    self:table(v)
  elseif text_of(v) then
    self:emit(text_of(v)) -- a json value read from PostgreSQL: its text
  else
    self:fail("cannot encode value of type " .. t)
  end
end

function Encoder:table(t)
  if self.active[t] then self:fail("cycle") end
  local depth = self.depth
  if depth >= self.max_depth then
    self:fail("nesting deeper than " .. self.max_depth)
  end
  self.active[t] = true
  local path = self.stack
  local k, n, bad = kind(t)
  if k == "array" then
    if bad then self:fail(bad) end
    self:emit("[")
    for i = 1, n do
      if i > 1 then self:emit(",") end
      path[depth + 1] = i
      self.depth = depth + 1
      self:value(rawget(t, i))
    end
    self.depth = depth
    self:emit("]")
  else
    local names, count, odd = keys(t)
    if odd ~= nil then
      path[depth + 1] = odd
      self.depth = depth + 1
      local shown = type(odd) == "number" and format_number(odd) or nil
      self:fail("object key must be a string, got " ..
                (shown and ("number " .. shown) or type(odd)))
    end
    self:emit("{")
    for i = 1, count do
      local name = names[i]
      if i > 1 then self:emit(",") end
      path[depth + 1] = name
      self.depth = depth + 1
      if utf8_invalid_at(name) then self:fail("invalid utf-8 in key") end
      self:emit(quote(name) .. ":")
      self:value(rawget(t, name))
    end
    self.depth = depth
    self:emit("}")
  end
  self.active[t] = nil
end

local function encode(v, root, max_bytes, depth)
  local enc = setmetatable({
    buf = {}, n = 0, size = 0, max_bytes = max_bytes, max_depth = depth,
    stack = {}, depth = 0, active = {}, root = root,
  }, Encoder)
  enc:value(v)
  return concat(enc.buf)
end

--- Encode a value as compact JSON with sorted object keys.
-- Returns the string, or nil and an error naming the path of the bad value
-- ("json: cannot encode value of type function at output.rows[2].f").
-- Options: `max_bytes` (default unlimited), `max_depth` (default 64),
-- `name` (the root of error paths, default "value").
function M.encode(v, opts)
  local root, max_bytes, depth = "value", huge, DEFAULT_ENCODE_DEPTH
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("json.encode: bad 'opts' (table expected, got " .. type(opts) .. ")", 2)
    end
    if opts.name ~= nil then
      if type(opts.name) ~= "string" then
        error("json.encode: bad 'opts.name' (string expected)", 2)
      end
      root = opts.name
    end
    if opts.max_bytes ~= nil then
      max_bytes = opts.max_bytes
      if type(max_bytes) ~= "number" or max_bytes < 0 then
        error("json.encode: bad 'opts.max_bytes' (non-negative number expected)", 2)
      end
    end
    if opts.max_depth ~= nil then
      depth = opts.max_depth
      if type(depth) ~= "number" or depth < 1 then
        error("json.encode: bad 'opts.max_depth' (positive number expected)", 2)
      end
    end
  end
  return catch(pcall(encode, v, root, max_bytes, depth))
end

return M
