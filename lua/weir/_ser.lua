-- weir._ser: serialise Lua values, user functions included, to a string.
--
-- This is how a task's `run` closure travels from the definition phase to
-- an attempt without re-evaluating the pipeline file (see
-- docs/adr/0002-task-closures-by-value.md): a user function is its bytecode
-- (string.dump of a function the compiler made from the user's text) plus
-- its upvalues, serialised by value; standard-library functions and tables
-- travel by name. Host (trusted) functions are refused, so nothing of the
-- trusted library can leak into a task. Tables keep sharing and cycles
-- within one value.
local type, next, tostring, tonumber = type, next, tostring, tonumber
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget
local getfenv, setfenv, load = getfenv, setfenv, load
local byte, sub, find = string.byte, string.sub, string.find
local native = require("weir._native")
local num_format = native.num_format
local dump = native.string_dump()
local native_encode, native_decode = native.ser_encode, native.ser_decode
local concat = table.concat
local getinfo, getupvalue, setupvalue = debug.getinfo, debug.getupvalue, debug.setupvalue
local huge, floor = math.huge, math.floor

local M = {}

local function is_sequence(t)
  local n = 0
  for k in next, t do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  if n == 0 then return false end
  for i = 1, n do
    if rawget(t, i) == nil then return false end
  end
  return true
end

-- A user closure whose upvalues are all strings, booleans, nil or
-- integers, in one go: what a pipeline file that builds its tasks in a loop
-- has thousands of. Anything else: nil, and the general encoder does it.
local function encode_simple_closure(f, env)
  local info = getinfo(f, "Su")
  if info.what == "C" or getfenv(f) ~= env then return nil end
  local bc = dump(f)
  local out = { "f1;", #bc, ":", bc, info.nups, ";" }
  for i = 1, info.nups do
    local _, u = getupvalue(f, i)
    local t = type(u)
    if t == "string" then
      out[#out + 1] = "s" .. #u .. ":"
      out[#out + 1] = u
    elseif t == "number" and u == floor(u) and u > -1e14 and u < 1e14 then
      out[#out + 1] = "d" .. u .. ";"
    elseif t == "boolean" then
      out[#out + 1] = u and "T" or "F"
    elseif u == nil then
      out[#out + 1] = "n"
    else
      return nil
    end
  end
  return concat(out)
end

--- Encode v. opts.builtins maps values (library functions and tables) to
-- names; opts.env is the only function environment accepted for Lua
-- functions (nil: functions are refused). Returns a string or nil, err.
function M.encode(v, opts)
  -- plain data: the C codec (runtime/sercodec.c); it declines the rest
  if opts == nil or (opts.builtins == nil and opts.env == nil) then
    local s = native_encode(v)
    if s then return s end
  elseif type(v) == "function" and opts.env then
    local s = encode_simple_closure(v, opts.env)
    if s then return s end
  end
  opts = opts or {}
  local builtins, env = opts.builtins or {}, opts.env
  local out, n = {}, 0
  local seen, next_id = {}, 0
  -- where we are, for error messages only: built when an error is raised
  local stack, depth = { opts.name or "value" }, 1

  local function fail(msg)
    local parts = {}
    for i = 1, depth do parts[i] = tostring(stack[i]) end
    error(table.concat(parts, ".") .. ": " .. msg, 0)
  end

  local function enc(x)
    local t = type(x)
    if t == "string" then
      out[n + 1] = "s" .. #x .. ":"
      out[n + 2] = x
      n = n + 2
    elseif t == "number" then
      n = n + 1
      if x ~= x then out[n] = "N"
      elseif x == huge then out[n] = "I"
      elseif x == -huge then out[n] = "i"
      elseif x == floor(x) and x > -1e14 and x < 1e14 then out[n] = "d" .. x .. ";"
      else out[n] = "d" .. num_format(x) .. ";" end
    elseif t == "boolean" then
      n = n + 1
      out[n] = x and "T" or "F"
    elseif t == "nil" then
      n = n + 1
      out[n] = "n"
    else
      local name = builtins[x]
      if name then
        out[n + 1] = "b" .. #name .. ":"
        out[n + 2] = name
        n = n + 2
        return
      end
      local id = seen[x]
      if id then n = n + 1; out[n] = "r" .. id .. ";"; return end
      if t == "table" then
        next_id = next_id + 1; seen[x] = next_id
        n = n + 1; out[n] = "t" .. next_id .. ";"
        local mt = getmetatable(x)
        if mt ~= nil then
          if type(mt) ~= "table" then fail("protected metatable") end
          n = n + 1; out[n] = "M"
          depth = depth + 1; stack[depth] = "<metatable>"
          enc(mt)
          depth = depth - 1
        end
        if is_sequence(x) then n = n + 1; out[n] = "A" end
        depth = depth + 1
        for k, val in next, x do
          local kt = type(k)
          stack[depth] = k
          if kt ~= "string" and kt ~= "number" and kt ~= "boolean" then
            fail("table key of type " .. kt .. " cannot be serialised")
          end
          enc(k); enc(val)
        end
        depth = depth - 1
        n = n + 1; out[n] = "e"
      elseif t == "function" then
        local info = getinfo(x, "Su")
        if info.what == "C" then fail("cannot capture a host function") end
        if env == nil or getfenv(x) ~= env then fail("cannot capture a function of the host") end
        next_id = next_id + 1; seen[x] = next_id
        local bc = dump(x)
        out[n + 1] = "f" .. next_id .. ";" .. #bc .. ":"
        out[n + 2] = bc
        out[n + 3] = info.nups .. ";"
        n = n + 3
        depth = depth + 1
        for i = 1, info.nups do
          local uname, uval = getupvalue(x, i)
          stack[depth] = "<" .. tostring(uname) .. ">"
          enc(uval)
        end
        depth = depth - 1
      else
        fail("value of type " .. t .. " cannot be serialised")
      end
    end
  end

  local ok, err = pcall(enc, v)
  if not ok then return nil, err end
  return concat(out, "", 1, n)
end

--- Decode s. opts.builtins maps names back to values, opts.env is the
-- environment given to decoded functions (nil: functions are refused),
-- opts.array_mt is set on tables that were sequences. start: where to
-- begin (1). Returns value and the position after it, or nil, err.
function M.decode(s, opts, start)
  if opts == nil or (opts.builtins == nil and opts.env == nil) then
    -- the C codec; it declines functions, builtins and metatables
    local v, pos = native_decode(s, start, opts and opts.array_mt)
    if pos ~= nil then return v, pos end
  end
  opts = opts or {}
  local builtins, env, array_mt = opts.builtins or {}, opts.env, opts.array_mt
  local refs = {}
  local pos = start or 1

  local function num_until(ch)
    local e = find(s, ch, pos, true)
    if not e then error("truncated", 0) end
    local v = tonumber(sub(s, pos, e - 1))
    if not v then error("bad number at " .. pos, 0) end
    pos = e + 1
    return v
  end

  local dec
  function dec()
    local tag = byte(s, pos)
    pos = pos + 1
    if tag == 110 then return nil                -- n
    elseif tag == 84 then return true            -- T
    elseif tag == 70 then return false           -- F
    elseif tag == 100 then return num_until(";") -- d
    elseif tag == 78 then return 0 / 0           -- N
    elseif tag == 73 then return huge            -- I
    elseif tag == 105 then return -huge          -- i
    elseif tag == 115 or tag == 98 then          -- s, b
      local len = num_until(":")
      local str = sub(s, pos, pos + len - 1)
      if #str ~= len then error("truncated", 0) end
      pos = pos + len
      if tag == 115 then return str end
      local val = builtins[str]
      if val == nil then error("unknown builtin " .. str, 0) end
      return val
    elseif tag == 114 then                        -- r
      return refs[num_until(";")]
    elseif tag == 116 then                        -- t
      local t = {}
      refs[num_until(";")] = t
      local mt
      if byte(s, pos) == 77 then pos = pos + 1; mt = dec() end
      if byte(s, pos) == 65 then
        pos = pos + 1
        if mt == nil then mt = array_mt end
      end
      while byte(s, pos) ~= 101 do
        if pos > #s then error("truncated", 0) end
        local k = dec()
        t[k] = dec()
      end
      pos = pos + 1
      if mt then setmetatable(t, mt) end
      return t
    elseif tag == 102 then                        -- f
      if env == nil then error("unexpected function", 0) end
      local id = num_until(";")
      local len = num_until(":")
      local bc = sub(s, pos, pos + len - 1)
      pos = pos + len
      local fn, err = load(bc, nil, "b")
      if not fn then error(err, 0) end
      setfenv(fn, env)
      refs[id] = fn
      local nups = num_until(";")
      for i = 1, nups do setupvalue(fn, i, dec()) end
      return fn
    end
    error("bad tag at " .. (pos - 1), 0)
  end

  local ok, v = pcall(dec)
  if not ok then return nil, "serialised value: " .. tostring(v) end
  return v, pos
end

return M
