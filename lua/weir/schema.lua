-- weir.schema - a JSON Schema (draft 2020-12 subset) validator.
--
-- Validates values decoded by weir.json: arrays carry json.array_mt, null is
-- json.null, an empty plain table is an object (a plain Lua sequence also
-- counts as an array, so schemas and values written as Lua tables work too).
-- Supported: type enum const properties required additionalProperties
-- patternProperties items prefixItems minItems maxItems uniqueItems minimum
-- maximum exclusiveMinimum exclusiveMaximum multipleOf minLength maxLength
-- allOf anyOf oneOf not if/then/else $ref (local: "#", "#/json/pointer")
-- $defs definitions dependentRequired propertyNames minProperties
-- maxProperties pattern, and boolean schemas. Other keywords are ignored.
-- A schema is compiled once into a tree of check functions; validation
-- collects every error with the path of the value it is about.
local json = require "weir.json"
local regex = require "weir.regex"

local byte, char, concat, find, format, gsub, sub =
  string.byte, string.char, table.concat, string.find, string.format,
  string.gsub, string.sub
local abs, floor, huge, max = math.abs, math.floor, math.huge, math.max
local error, getmetatable, ipairs, next, pcall, rawget, select, setmetatable,
      tonumber, tostring, type =
  error, getmetatable, ipairs, next, pcall, rawget, select, setmetatable,
  tonumber, tostring, type

local kind, null, keys_of = json.kind, json.null, json._keys
local format_number, quote = json._format_number, json._quote

local M = {}

local MAX_REF_DEPTH = 512   -- nested $ref evaluations before giving up
local SHOW_LIMIT = 40       -- characters of a value shown in a message
local ENUM_SHOWN = 10       -- enum members listed in a message

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

-- Number of UTF-8 code points in s (continuation bytes are not counted).
local function utf8_len(s)
  if not find(s, "[\128-\255]") then return #s end
  local _, cont = gsub(s, "[\128-\191]", "")
  return #s - cont
end

-- The first `limit` code points of s, and whether anything was cut.
local function utf8_cut(s, limit)
  if #s <= limit then return s, false end
  local count, i = 0, 1
  local len = #s
  while i <= len do
    local c = byte(s, i)
    if c < 0x80 or c >= 0xC0 then
      count = count + 1
      if count > limit then return sub(s, 1, i - 1), true end
    end
    i = i + 1
  end
  return s, false
end

local Stop = {}

--- Renders a value for a message: compact JSON, cut to about 40 characters
-- ("\"three\"", "-1", "{\"a\":1,...}"); never runs metamethods.
local function show(v)
  local t = type(v)
  if t == "string" then
    local s, cut = utf8_cut(v, SHOW_LIMIT)
    if cut then return sub(quote(s), 1, -2) .. "...\"" end
    return quote(s)
  elseif t == "number" then
    return format_number(v) or tostring(v)
  elseif t == "boolean" then
    return tostring(v)
  elseif v == nil or v == null then
    return "null"
  elseif t ~= "table" then
    return t
  end
  local parts, len = {}, 0
  local function put(s)
    parts[#parts + 1] = s
    len = len + #s
    if len > SHOW_LIMIT then error(Stop, 0) end
  end
  local seen = {}
  local function walk(x)
    local tx = type(x)
    if tx ~= "table" or x == null then return put(show(x)) end
    if seen[x] then return put("...") end
    seen[x] = true
    local k, n = kind(x)
    if k == "array" then
      put("[")
      for i = 1, n do
        if i > 1 then put(",") end
        walk(rawget(x, i))
      end
      put("]")
    else
      local names = keys_of(x)
      put("{")
      for i = 1, #names do
        if i > 1 then put(",") end
        put(quote(names[i]) .. ":")
        walk(rawget(x, names[i]))
      end
      put("}")
    end
    seen[x] = nil
  end
  local ok, err = pcall(walk, v)
  if not ok and err ~= Stop then error(err, 0) end
  local s = concat(parts)
  if ok then return s end
  return (utf8_cut(s, SHOW_LIMIT)) .. "..."
end
M._show = show

--- Deep JSON equality: 1 == 1.0, arrays and objects differ, key order is
-- irrelevant, nil and json.null are both null.
local function equal(a, b)
  if a == b then return true end
  local ka, na = kind(a)
  local kb, nb = kind(b)
  if ka ~= kb then return false end
  if ka == "null" then return true end
  if ka == "array" then
    if na ~= nb then return false end
    for i = 1, na do
      if not equal(rawget(a, i), rawget(b, i)) then return false end
    end
    return true
  elseif ka == "object" then
    local count = 0
    local k, va = next(a)
    while k ~= nil do
      local vb = rawget(b, k)
      if vb == nil or not equal(va, vb) then return false end
      count = count + 1
      k, va = next(a, k)
    end
    k = next(b)
    while k ~= nil do
      count = count - 1
      k = next(b, k)
    end
    return count == 0
  end
  return false
end
M._equal = equal

local function is_integer(v)
  return type(v) == "number" and v == floor(v) and v > -huge and v < huge
end

local function count_keys(obj)
  local n = 0
  local k = next(obj)
  while k ~= nil do
    n = n + 1
    k = next(obj, k)
  end
  return n
end

local function plural(n, one, many)
  return format_number(n) .. " " .. (n == 1 and one or many or one .. "s")
end

---------------------------------------------------------------------------
-- Validation state
---------------------------------------------------------------------------

-- ctx = { errors = list or nil (nil: only the verdict matters),
--         path = { key or index, ... }, depth = #path, refs = $ref nesting }

local function needs_quotes(key)
  return key == "" or find(key, "[%.%[%]\"%s%c]") ~= nil
end

--- Renders a path: keys joined with ".", array elements as "[i]" (1-based),
-- odd keys quoted (tasks["a.b"]); the root is "".
local function format_path(path, depth)
  local parts = {}
  for i = 1, depth do
    local k = path[i]
    if type(k) == "number" then
      parts[i] = "[" .. format_number(k) .. "]"
    elseif needs_quotes(k) then
      parts[i] = "[" .. quote(k) .. "]"
    elseif i == 1 then
      parts[i] = k
    else
      parts[i] = "." .. k
    end
  end
  return concat(parts)
end

local function report(ctx, keyword, message)
  local errs = ctx.errors
  if errs then
    errs[#errs + 1] = {
      path = format_path(ctx.path, ctx.depth), message = message, keyword = keyword,
    }
  end
  return false
end

local TRUE = { checks = {} }
local FALSE = { checks = {} }

local function validate(node, ctx, v)
  if node == TRUE then return true end
  if node == FALSE then return report(ctx, "false", "not allowed, got " .. show(v)) end
  local checks = node.checks
  local k, n = kind(v)
  local ok = true
  for i = 1, #checks do
    if not checks[i](ctx, v, k, n) then
      if not ctx.errors then return false end
      ok = false
    end
  end
  return ok
end

-- Validates a child value, extending the path with key.
local function descend(node, ctx, v, key)
  if node == TRUE then return true end
  local d = ctx.depth + 1
  ctx.depth = d
  ctx.path[d] = key
  local ok = validate(node, ctx, v)
  ctx.depth = d - 1
  return ok
end

-- Only the verdict, no errors.
local function passes(node, ctx, v)
  local saved = ctx.errors
  ctx.errors = nil
  local ok = validate(node, ctx, v)
  ctx.errors = saved
  return ok
end

-- The verdict and the errors, kept apart from ctx.errors.
local function collect(node, ctx, v)
  local saved, list = ctx.errors, {}
  ctx.errors = list
  local ok = validate(node, ctx, v)
  ctx.errors = saved
  return ok, list
end

local function append(ctx, list)
  local errs = ctx.errors
  for i = 1, #list do errs[#errs + 1] = list[i] end
end

---------------------------------------------------------------------------
-- Compiler
---------------------------------------------------------------------------

local TYPES = {
  null = true, boolean = true, object = true, array = true, number = true,
  string = true, integer = true,
}

local Compiler = {}
Compiler.__index = Compiler

local CompileError = {}

function Compiler.fail(_, ptr, msg)
  error(setmetatable({ msg = format("schema: %s at %s", msg, ptr) }, CompileError), 0)
end

local function escape_token(s)
  return (gsub(gsub(s, "~", "~0"), "/", "~1"))
end

local function child(ptr, ...)
  local parts = { ptr }
  for i = 1, select("#", ...) do
    local k = select(i, ...)
    parts[#parts + 1] = type(k) == "number" and format_number(k) or escape_token(k)
  end
  return concat(parts, "/")
end

-- The length of an array-valued keyword, or nil. An empty plain table
-- counts as an empty array, so Lua-literal schemas can write `{}`.
local function array_len(v)
  local k, n = kind(v)
  if k == "array" then return n end
  if k == "object" and next(v) == nil then return 0 end
  return nil
end

local function is_object(v)
  return type(v) == "table" and kind(v) == "object"
end

function Compiler:number(s, ptr, name)
  local v = rawget(s, name)
  if v ~= nil and (type(v) ~= "number" or v ~= v) then
    self:fail(child(ptr, name), format("%q must be a number", name))
  end
  return v
end

function Compiler:count(s, ptr, name)
  local v = rawget(s, name)
  if v ~= nil and (not is_integer(v) or v < 0) then
    self:fail(child(ptr, name), format("%q must be a non-negative integer", name))
  end
  return v
end

function Compiler:schema_list(s, ptr, name)
  local v = rawget(s, name)
  if v == nil then return nil end
  local n = array_len(v)
  if not n or n == 0 then
    self:fail(child(ptr, name), format("%q must be a non-empty array of schemas", name))
  end
  local list = {}
  for i = 1, n do list[i] = self:schema(rawget(v, i), child(ptr, name, i - 1)) end
  return list
end

function Compiler:string_list(s, ptr, name)
  local v = rawget(s, name)
  if v == nil then return nil end
  local n = array_len(v)
  if not n then self:fail(child(ptr, name), format("%q must be an array of strings", name)) end
  local list = {}
  for i = 1, n do
    local item = rawget(v, i)
    if type(item) ~= "string" then
      self:fail(child(ptr, name, i - 1), format("%q must be an array of strings", name))
    end
    list[i] = item
  end
  return list
end

function Compiler:object(s, ptr, name)
  local v = rawget(s, name)
  if v ~= nil and not is_object(v) then
    self:fail(child(ptr, name), format("%q must be an object", name))
  end
  return v
end

function Compiler:regex(src, ptr)
  if type(src) ~= "string" then self:fail(ptr, "a pattern must be a string") end
  local m, err = regex.compile(src)
  if not m then self:fail(ptr, format("invalid pattern %s (%s)", quote(src), err)) end
  return m
end

local function percent_decode(s)
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- Resolves a local $ref ("#", "#/a/b~1c") to the schema value it names.
function Compiler:resolve(ref, ptr)
  if sub(ref, 1, 1) ~= "#" then
    self:fail(ptr, format("unsupported $ref %s (only local refs like \"#/$defs/name\")",
                          quote(ref)))
  end
  local fragment = percent_decode(sub(ref, 2))
  if fragment == "" then return self.root, "#" end
  if sub(fragment, 1, 1) ~= "/" then
    self:fail(ptr, format("unsupported $ref %s (anchors are not supported)", quote(ref)))
  end
  local target = self.root
  for token in (sub(fragment, 2) .. "/"):gmatch("([^/]*)/") do
    token = gsub(gsub(token, "~1", "/"), "~0", "~")
    local k, n = kind(target)
    local nxt
    if k == "object" then
      nxt = rawget(target, token)
    elseif k == "array" and find(token, "^%d+$") then
      local i = tonumber(token) + 1
      if i <= n then nxt = rawget(target, i) end
    end
    if nxt == nil then
      self:fail(ptr, format("unresolvable $ref %s", quote(ref)))
    end
    target = nxt
  end
  return target, "#" .. fragment
end

function Compiler:schema(s, ptr)
  if s == true then return TRUE end
  if s == false then return FALSE end
  if not is_object(s) then
    self:fail(ptr, "a schema must be an object or a boolean, got " .. show(s))
  end
  local node = self.nodes[s]
  if node then return node end
  node = { checks = {} }
  self.nodes[s] = node
  local checks = node.checks
  local function add(fn) checks[#checks + 1] = fn end

  -- Keywords are checked in this order; every failing one reports.
  self:compile_type(s, ptr, node, add)
  self:compile_values(s, ptr, add)
  self:compile_numbers(s, ptr, add)
  self:compile_strings(s, ptr, add)
  self:compile_arrays(s, ptr, add)
  self:compile_objects(s, ptr, add)
  self:compile_logic(s, ptr, add)
  self:compile_ref(s, ptr, add)
  for _, defs in ipairs({ "$defs", "definitions" }) do
    local d = self:object(s, ptr, defs)
    if d then
      for _, name in ipairs((keys_of(d))) do
        self:schema(rawget(d, name), child(ptr, defs, name))
      end
    end
  end
  return node
end

local function describe_types(types)
  if #types == 1 then return types[1] end
  return concat(types, ", ", 1, #types - 1) .. " or " .. types[#types]
end

local function type_matches(t, k, v)
  return t == k or (t == "integer" and k == "number" and is_integer(v))
    or (t == "number" and k == "number")
end

function Compiler:compile_type(s, ptr, node, add)
  local t = rawget(s, "type")
  if t == nil then return end
  local types
  if type(t) == "string" then
    types = { t }
  else
    types = self:string_list(s, ptr, "type")
    if #types == 0 then self:fail(child(ptr, "type"), "\"type\" must not be empty") end
  end
  for i = 1, #types do
    if not TYPES[types[i]] then
      self:fail(child(ptr, "type"), "unknown type " .. quote(types[i]))
    end
  end
  node.types = types
  local expected = "expected " .. describe_types(types) .. ", got "
  add(function(ctx, v, k)
    for i = 1, #types do
      if type_matches(types[i], k, v) then return true end
    end
    return report(ctx, "type", expected .. show(v))
  end)
end

-- Whether a value passes a node's "type" keyword (true when it has none).
local function type_compatible(node, v)
  local types = node.types
  if not types then return node ~= FALSE end
  local k = kind(v)
  for i = 1, #types do
    if type_matches(types[i], k, v) then return true end
  end
  return false
end

function Compiler:compile_values(s, ptr, add)
  local c = rawget(s, "const")
  if c ~= nil then
    local expected = "must be " .. show(c) .. ", got "
    add(function(ctx, v)
      if equal(v, c) then return true end
      return report(ctx, "const", expected .. show(v))
    end)
  end
  local e = rawget(s, "enum")
  if e ~= nil then
    local n = array_len(e)
    if not n then self:fail(child(ptr, "enum"), "\"enum\" must be an array") end
    local values, shown = {}, {}
    for i = 1, n do
      values[i] = rawget(e, i)
      if i <= ENUM_SHOWN then shown[i] = show(values[i]) end
    end
    if n > ENUM_SHOWN then shown[#shown + 1] = "..." end
    local expected = n == 0 and "no value is allowed (empty enum), got "
      or "must be one of " .. concat(shown, ", ") .. ", got "
    add(function(ctx, v)
      for i = 1, n do
        if equal(v, values[i]) then return true end
      end
      return report(ctx, "enum", expected .. show(v))
    end)
  end
end

local function multiple_of(v, m)
  local q = v / m
  if q ~= q or q == huge or q == -huge then return false end
  local r = floor(q + 0.5)
  return abs(q - r) <= max(1e-9, abs(q) * 1e-15)
end

function Compiler:compile_numbers(s, ptr, add)
  local bounds = {
    { "minimum", function(v, b) return v >= b end, "must be >= " },
    { "maximum", function(v, b) return v <= b end, "must be <= " },
    { "exclusiveMinimum", function(v, b) return v > b end, "must be > " },
    { "exclusiveMaximum", function(v, b) return v < b end, "must be < " },
  }
  for _, def in ipairs(bounds) do
    local name, test = def[1], def[2]
    local b = self:number(s, ptr, name)
    if b then
      local expected = def[3] .. format_number(b) .. ", got "
      add(function(ctx, v, k)
        if k ~= "number" or test(v, b) then return true end
        return report(ctx, name, expected .. show(v))
      end)
    end
  end
  local m = self:number(s, ptr, "multipleOf")
  if m then
    if m <= 0 then self:fail(child(ptr, "multipleOf"), "\"multipleOf\" must be > 0") end
    local expected = "must be a multiple of " .. format_number(m) .. ", got "
    add(function(ctx, v, k)
      if k ~= "number" or multiple_of(v, m) then return true end
      return report(ctx, "multipleOf", expected .. show(v))
    end)
  end
end

function Compiler:compile_strings(s, ptr, add)
  local min_len = self:count(s, ptr, "minLength")
  if min_len then
    local expected = "must be at least " .. plural(min_len, "character") .. " long, got "
    add(function(ctx, v, k)
      if k ~= "string" or utf8_len(v) >= min_len then return true end
      return report(ctx, "minLength", expected .. show(v))
    end)
  end
  local max_len = self:count(s, ptr, "maxLength")
  if max_len then
    local expected = "must be at most " .. plural(max_len, "character") .. " long, got "
    add(function(ctx, v, k)
      if k ~= "string" or utf8_len(v) <= max_len then return true end
      return report(ctx, "maxLength", expected .. show(v))
    end)
  end
  local p = rawget(s, "pattern")
  if p ~= nil then
    local m = self:regex(p, child(ptr, "pattern"))
    local expected = "must match pattern " .. quote(p) .. ", got "
    add(function(ctx, v, k)
      if k ~= "string" then return true end
      local ok, err = m:test(v)
      if ok then return true end
      if err then
        return report(ctx, "pattern", "cannot check pattern " .. quote(p) .. ": " .. err)
      end
      return report(ctx, "pattern", expected .. show(v))
    end)
  end
end

function Compiler:compile_arrays(s, ptr, add)
  local prefix = self:schema_list(s, ptr, "prefixItems")
  local items = rawget(s, "items")
  if items ~= nil then
    if type(items) == "table" and kind(items) == "array" then
      self:fail(child(ptr, "items"), "\"items\" must be a schema (use \"prefixItems\" for tuples)")
    end
    items = self:schema(items, child(ptr, "items"))
  end
  if prefix or items then
    local np = prefix and #prefix or 0
    add(function(ctx, v, k, n)
      if k ~= "array" then return true end
      local ok = true
      for i = 1, np < n and np or n do
        if not descend(prefix[i], ctx, rawget(v, i), i) then
          if not ctx.errors then return false end
          ok = false
        end
      end
      if items and n > np then
        if items == FALSE then
          return report(ctx, "items", "must have at most " .. plural(np, "item")
                        .. ", got " .. format_number(n))
        end
        for i = np + 1, n do
          if not descend(items, ctx, rawget(v, i), i) then
            if not ctx.errors then return false end
            ok = false
          end
        end
      end
      return ok
    end)
  end
  local min_items = self:count(s, ptr, "minItems")
  if min_items then
    local expected = "must have at least " .. plural(min_items, "item") .. ", got "
    add(function(ctx, _, k, n)
      if k ~= "array" or n >= min_items then return true end
      return report(ctx, "minItems", expected .. format_number(n))
    end)
  end
  local max_items = self:count(s, ptr, "maxItems")
  if max_items then
    local expected = "must have at most " .. plural(max_items, "item") .. ", got "
    add(function(ctx, _, k, n)
      if k ~= "array" or n <= max_items then return true end
      return report(ctx, "maxItems", expected .. format_number(n))
    end)
  end
  local unique = rawget(s, "uniqueItems")
  if unique ~= nil and type(unique) ~= "boolean" then
    self:fail(child(ptr, "uniqueItems"), "\"uniqueItems\" must be a boolean")
  end
  if unique then
    add(function(ctx, v, k, n)
      if k ~= "array" then return true end
      local ok = true
      local seen, tables = {}, {}
      for i = 1, n do
        local item = rawget(v, i)
        if item == nil then item = null end
        local first
        if item ~= item then -- NaN: never equal, not a table key
          first = nil
        elseif type(item) == "table" and item ~= null then
          for j = 1, #tables do
            if equal(item, rawget(v, tables[j])) then first = tables[j] break end
          end
          if not first then tables[#tables + 1] = i end
        else
          first = seen[item]
          if not first then seen[item] = i end
        end
        if first then
          ok = report(ctx, "uniqueItems", format("must have unique items, got %s at [%d] and [%d]",
                                                 show(item), first, i))
          if not ctx.errors then return false end
        end
      end
      return ok
    end)
  end
end

function Compiler:compile_objects(s, ptr, add)
  local props = self:object(s, ptr, "properties")
  local names, nprops, pnodes = {}, 0, {}
  if props then
    names, nprops = keys_of(props)
    for i = 1, nprops do
      pnodes[i] = self:schema(rawget(props, names[i]), child(ptr, "properties", names[i]))
    end
  end
  local pats = self:object(s, ptr, "patternProperties")
  local patterns = {}
  if pats then
    local srcs = keys_of(pats)
    for i = 1, #srcs do
      local p = child(ptr, "patternProperties", srcs[i])
      patterns[i] = { src = srcs[i], re = self:regex(srcs[i], p),
                      node = self:schema(rawget(pats, srcs[i]), p) }
    end
  end
  local addl = rawget(s, "additionalProperties")
  if addl ~= nil then addl = self:schema(addl, child(ptr, "additionalProperties")) end
  local pnames = rawget(s, "propertyNames")
  if pnames ~= nil then pnames = self:schema(pnames, child(ptr, "propertyNames")) end

  if nprops > 0 then
    add(function(ctx, v, k)
      if k ~= "object" then return true end
      local ok = true
      for i = 1, nprops do
        local name = names[i]
        local pv = rawget(v, name)
        if pv ~= nil and not descend(pnodes[i], ctx, pv, name) then
          if not ctx.errors then return false end
          ok = false
        end
      end
      return ok
    end)
  end
  if #patterns > 0 or (addl and addl ~= TRUE) or (pnames and pnames ~= TRUE) then
    local npat = #patterns
    add(function(ctx, v, k)
      if k ~= "object" then return true end
      local ok = true
      local keys = keys_of(v)
      for i = 1, #keys do
        local key = keys[i]
        local pv = rawget(v, key)
        if pnames == FALSE then
          ok = report(ctx, "propertyNames", "property " .. show(key) .. " is not allowed")
          if not ctx.errors then return false end
        elseif pnames then
          local good, errs = collect(pnames, ctx, key)
          if not good then
            ok = false
            if not ctx.errors then return false end
            for j = 1, #errs do
              report(ctx, "propertyNames",
                     "invalid property name " .. show(key) .. ": " .. errs[j].message)
            end
          end
        end
        local matched = props ~= nil and rawget(props, key) ~= nil
        for j = 1, npat do
          local pat = patterns[j]
          local hit, err = pat.re:test(key)
          if err then
            ok = report(ctx, "patternProperties", "cannot check pattern "
                        .. quote(pat.src) .. ": " .. err)
            if not ctx.errors then return false end
          elseif hit then
            matched = true
            if not descend(pat.node, ctx, pv, key) then
              if not ctx.errors then return false end
              ok = false
            end
          end
        end
        if addl and not matched then
          if addl == FALSE then
            ok = report(ctx, "additionalProperties", "unknown property " .. show(key))
            if not ctx.errors then return false end
          elseif not descend(addl, ctx, pv, key) then
            if not ctx.errors then return false end
            ok = false
          end
        end
      end
      return ok
    end)
  end

  local required = self:string_list(s, ptr, "required")
  if required and #required > 0 then
    add(function(ctx, v, k)
      if k ~= "object" then return true end
      local ok = true
      for i = 1, #required do
        if rawget(v, required[i]) == nil then
          ok = report(ctx, "required", "missing required property " .. show(required[i]))
          if not ctx.errors then return false end
        end
      end
      return ok
    end)
  end
  local dep = self:object(s, ptr, "dependentRequired")
  if dep then
    local triggers = keys_of(dep)
    local lists = {}
    for i = 1, #triggers do
      lists[i] = self:string_list(dep, child(ptr, "dependentRequired"), triggers[i])
    end
    add(function(ctx, v, k)
      if k ~= "object" then return true end
      local ok = true
      for i = 1, #triggers do
        if rawget(v, triggers[i]) ~= nil then
          local list = lists[i]
          for j = 1, #list do
            if rawget(v, list[j]) == nil then
              ok = report(ctx, "dependentRequired", "missing property " .. show(list[j])
                          .. ", required when " .. show(triggers[i]) .. " is present")
              if not ctx.errors then return false end
            end
          end
        end
      end
      return ok
    end)
  end
  local min_props = self:count(s, ptr, "minProperties")
  local max_props = self:count(s, ptr, "maxProperties")
  if min_props or max_props then
    add(function(ctx, v, k)
      if k ~= "object" then return true end
      local n = count_keys(v)
      if min_props and n < min_props then
        return report(ctx, "minProperties", "must have at least "
                      .. plural(min_props, "property", "properties")
                      .. ", got " .. n)
      end
      if max_props and n > max_props then
        return report(ctx, "maxProperties", "must have at most "
                      .. plural(max_props, "property", "properties")
                      .. ", got " .. n)
      end
      return true
    end)
  end
end

-- One summary error for a failed anyOf/oneOf; when every branch failed on
-- "type", it reads like a type error ("expected string or array, got 3");
-- otherwise the errors of the most plausible branch follow it.
local function report_no_match(ctx, keyword, branches, v, message)
  local types, all_typed = {}, true
  for i = 1, #branches do
    local b = branches[i]
    if not b.types or type_compatible(b, v) then
      all_typed = false
      break
    end
    for j = 1, #b.types do types[#types + 1] = b.types[j] end
  end
  if all_typed and #types > 0 then
    local uniq, seen = {}, {}
    for i = 1, #types do
      if not seen[types[i]] then
        seen[types[i]] = true
        uniq[#uniq + 1] = types[i]
      end
    end
    return report(ctx, keyword, "expected " .. describe_types(uniq) .. ", got " .. show(v))
  end
  report(ctx, keyword, message .. ", got " .. show(v))
  local best
  for i = 1, #branches do
    if type_compatible(branches[i], v) then
      local _, errs = collect(branches[i], ctx, v)
      if not best or #errs < #best then best = errs end
    end
  end
  if best then append(ctx, best) end
  return false
end

function Compiler:compile_logic(s, ptr, add)
  local all = self:schema_list(s, ptr, "allOf")
  if all then
    add(function(ctx, v)
      local ok = true
      for i = 1, #all do
        if not validate(all[i], ctx, v) then
          if not ctx.errors then return false end
          ok = false
        end
      end
      return ok
    end)
  end
  local any = self:schema_list(s, ptr, "anyOf")
  if any then
    add(function(ctx, v)
      for i = 1, #any do
        if passes(any[i], ctx, v) then return true end
      end
      if not ctx.errors then return false end
      return report_no_match(ctx, "anyOf", any, v, "must match at least one schema in anyOf")
    end)
  end
  local one = self:schema_list(s, ptr, "oneOf")
  if one then
    add(function(ctx, v)
      local hits = {}
      for i = 1, #one do
        if passes(one[i], ctx, v) then
          hits[#hits + 1] = i
          if #hits > 1 and not ctx.errors then return false end
        end
      end
      if #hits == 1 then return true end
      if not ctx.errors then return false end
      if #hits == 0 then
        return report_no_match(ctx, "oneOf", one, v, "must match exactly one schema in oneOf")
      end
      for i = 1, #hits do hits[i] = "#" .. hits[i] end
      return report(ctx, "oneOf", "must match exactly one schema in oneOf, but matches "
                    .. concat(hits, ", ", 1, #hits - 1) .. " and " .. hits[#hits]
                    .. ", got " .. show(v))
    end)
  end
  local negated = rawget(s, "not")
  if negated ~= nil then
    negated = self:schema(negated, child(ptr, "not"))
    add(function(ctx, v)
      if not passes(negated, ctx, v) then return true end
      return report(ctx, "not", "must not match the schema in not, got " .. show(v))
    end)
  end
  local cond = rawget(s, "if")
  if cond ~= nil then
    cond = self:schema(cond, child(ptr, "if"))
    local then_ = rawget(s, "then")
    local else_ = rawget(s, "else")
    then_ = then_ ~= nil and self:schema(then_, child(ptr, "then")) or nil
    else_ = else_ ~= nil and self:schema(else_, child(ptr, "else")) or nil
    if then_ or else_ then
      add(function(ctx, v)
        local branch
        if passes(cond, ctx, v) then branch = then_ else branch = else_ end
        if not branch then return true end
        return validate(branch, ctx, v)
      end)
    end
  end
end

function Compiler:compile_ref(s, ptr, add)
  local ref = rawget(s, "$ref")
  if ref == nil then return end
  if type(ref) ~= "string" then self:fail(child(ptr, "$ref"), "\"$ref\" must be a string") end
  local target_value, target_ptr = self:resolve(ref, child(ptr, "$ref"))
  local target = self:schema(target_value, target_ptr)
  add(function(ctx, v)
    local refs = ctx.refs + 1
    if refs > MAX_REF_DEPTH then
      return report(ctx, "$ref", "schema recursion deeper than " .. MAX_REF_DEPTH
                    .. " $ref levels")
    end
    ctx.refs = refs
    local ok = validate(target, ctx, v)
    ctx.refs = refs - 1
    return ok
  end)
end

---------------------------------------------------------------------------
-- Public API
---------------------------------------------------------------------------

local Validator = {}
Validator.__index = Validator

--- Validates a value. Returns true and an empty array, or false and an
-- array of every error found: { path = "tasks.load.after[2]",
-- message = "expected string, got 3", keyword = "type" }.
function Validator:validate(value)
  local ctx = { errors = {}, path = {}, depth = 0, refs = 0 }
  local ok, res = pcall(validate, self.root, ctx, value)
  if not ok then
    if type(res) == "string" and find(res, "stack overflow", 1, true) then
      ctx.depth = 0
      report(ctx, "$ref", "value too deeply nested to validate")
      return false, ctx.errors
    end
    error(res, 0)
  end
  return res, ctx.errors
end

--- Compiles a schema (a table decoded by weir.json, a Lua table, or a
-- boolean). Returns a validator, or nil and an error naming the place in
-- the schema ("schema: \"minimum\" must be a number at #/properties/n").
function M.compile(schema)
  if schema == nil then
    error("schema.compile: bad 'schema' (schema expected, got nil)", 2)
  end
  local c = setmetatable({ root = schema, nodes = {} }, Compiler)
  local ok, node = pcall(c.schema, c, schema, "#")
  if not ok then
    if type(node) == "table" and getmetatable(node) == CompileError then
      return nil, node.msg
    end
    error(node, 0)
  end
  return setmetatable({ root = node, schema = schema }, Validator)
end

--- Formats errors one per line as "path: message" (the root as "(root)").
function M.format_errors(errors)
  if type(errors) ~= "table" then
    error("schema.format_errors: bad 'errors' (table expected, got " .. type(errors) .. ")", 2)
  end
  local lines = {}
  for i = 1, #errors do
    local e = errors[i]
    local path = e.path
    if path == nil or path == "" then path = "(root)" end
    lines[i] = path .. ": " .. tostring(e.message)
  end
  return concat(lines, "\n")
end

return M
