-- weir.sandbox: the environment user code runs in.
--
-- The allow-list is data: every name user code can reach is listed below,
-- grouped by origin. Anything not listed is unreachable, in particular
-- ffi, debug, io, package, require, jit, string.dump, getfenv/setfenv,
-- os.execute/exit/getenv/remove/rename, dofile/loadfile, rawset and
-- bytecode loading. Each environment is fresh: library tables are copies
-- whose __newindex raises and whose metatable is locked; the environment
-- itself reports reads of undefined globals. docs/security.md lists the
-- same names; a spec checks the two agree.
local type, error, pairs, ipairs, rawget, rawset, tostring = type, error, pairs, ipairs, rawget,
  rawset, tostring
local setmetatable, getmetatable, load, select = setmetatable, getmetatable, load, select
local collectgarbage = collectgarbage

local M = {}

--- Names user code may use, grouped by the library they come from.
M.allow = {
  -- base library: pure functions, no access to environments or files
  base = {
    "assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget",
    "select", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall",
  },
  string = {
    "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match",
    "rep", "reverse", "sub", "upper",
  },
  table = { "concat", "insert", "maxn", "remove", "sort" },
  math = {
    "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "deg", "exp",
    "floor", "fmod", "frexp", "huge", "ldexp", "log", "log10", "max", "min", "modf",
    "pi", "pow", "rad", "random", "randomseed", "sin", "sinh", "sqrt", "tan", "tanh",
  },
  os = { "clock", "date", "difftime", "time" },
  bit = {
    "arshift", "band", "bnot", "bor", "bswap", "bxor", "lshift", "rol", "ror",
    "rshift", "tobit", "tohex",
  },
  coroutine = { "create", "resume", "running", "status", "wrap", "yield" },
}

--- Functions replaced by a restricted version (see wrappers below).
M.wrapped = {
  getmetatable = "tables only: strings' shared metatable is not reachable",
  load = "source text only (mode \"t\"), environment defaults to the sandbox",
  loadstring = "source text only, like load",
  collectgarbage = "only \"count\"",
  print = "writes to the task log",
}

--- Deliberate removals, for the documentation and the escape specs.
M.deny = {
  "ffi", "debug", "io", "package", "require", "module", "jit", "dofile", "loadfile",
  "getfenv", "setfenv", "rawset", "newproxy", "gcinfo", "string.dump", "os.execute",
  "os.exit", "os.getenv", "os.remove", "os.rename", "os.tmpname", "os.setlocale",
}

--- What to say when user code reaches for a name the sandbox leaves out:
-- what to use instead. A global, or a library's member ("os.getenv").
M.hints = {
  io = "read and write files with ctx.csv, ctx.jsonl and ctx.sqlite, s:to_csv and "
       .. "s:to_jsonl (ctx.path(p) gives a file's path)",
  ["os.getenv"] = "put settings in weir.yaml (secrets as ${env:NAME} or ${file:PATH} "
                  .. "references, reached with ctx.source/ctx.sink) or pass them as params "
                  .. "(ctx.params)",
  require = "weir's own functions come through ctx (ctx.csv, ctx.source, ...); share code "
            .. "as local functions of the pipeline file",
  package = "weir's own functions come through ctx; share code as local functions of the "
            .. "pipeline file",
  dofile = "share code as local functions of the pipeline file",
  loadfile = "share code as local functions of the pipeline file",
  ["os.execute"] = "tasks cannot start programs",
  ["os.exit"] = "return from the task, or fail it with ctx.fail(message)",
  ["os.remove"] = "file sinks replace their file whole (s:to_csv, s:to_jsonl)",
  ["os.rename"] = "file sinks replace their file whole (s:to_csv, s:to_jsonl)",
  ["os.tmpname"] = "write the file where it belongs: sinks write a temporary file and "
                   .. "rename it themselves",
  ["string.dump"] = "tasks run from source text",
}
local GENERIC = "it is removed from the sandbox (docs/security.md)"

-- the error for a left-out name (nil when name is simply unknown)
local function removed(name)
  local hint = M.hints[name]
  local denied = hint ~= nil
  for _, d in ipairs(M.deny) do if d == name then denied = true end end
  if not denied then return nil end
  return name .. " is not available in tasks: " .. (hint or GENERIC)
end
M.removed = removed

-- A read-only view of t: reads go to t, writes raise; reading a member
-- the sandbox removed (os.getenv) says so and what to use instead.
local function locked(name, t)
  setmetatable(t, { __index = function(_, k)
    local msg = type(k) == "string" and removed(name .. "." .. k)
    if msg then error(msg, 2) end
  end })
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k)
      error("sandbox: " .. name .. " is read-only (cannot set " .. tostring(k) .. ")", 2)
    end,
    __metatable = false,
  })
end

--- Build a fresh environment. extra: names to add (pipeline/task or ctx);
-- print_fn: where print goes; phase: "define" while a pipeline file loads,
-- "repl" in a weir repl session, else a task. Returns env, builtins (name -> value) and
-- names (value -> name) for weir._ser; the last two and the library tables
-- are built on first use, so a task that touches none of them pays nothing.
function M.new(extra, print_fn, phase)
  local env = {}
  for _, n in ipairs(M.allow.base) do env[n] = rawget(_G, n) end
  env._VERSION = _VERSION

  env.getmetatable = function(x)
    if type(x) ~= "table" then return nil end
    return getmetatable(x)
  end
  env.load = function(chunk, name, _, e)
    if type(chunk) ~= "string" then
      return nil, "load: only a string of Lua source is accepted"
    end
    return load(chunk, "=" .. tostring(name or "load"), "t", e or env)
  end
  env.loadstring = function(chunk, name) return env.load(chunk, name) end
  env.collectgarbage = function(opt)
    if opt ~= "count" then
      error("sandbox: collectgarbage only accepts \"count\"", 2)
    end
    return collectgarbage("count")
  end
  env.print = function(...)
    if print_fn then
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      print_fn(table.concat(parts, "\t"))
    end
  end
  if extra then
    for k, v in pairs(extra) do env[k] = v end
  end
  env._G = env

  setmetatable(env, {
    __index = function(t, k)
      local names = M.allow[k]
      if names and k ~= "base" then
        -- a library table: a read-only view of a copy, made on first use
        -- os and bit are opened on first use in attempt states
        local src, copy = rawget(_G, k) or require(k), {}
        for _, n in ipairs(names) do copy[n] = src[n] end
        local lib = locked(k, copy)
        rawset(t, k, lib)
        return lib
      end
      local msg = removed(tostring(k))
      if msg then
        error(phase == "define" and (msg:gsub(" in tasks:", " in pipeline files:", 1)) or msg, 2)
      end
      if phase == "define" or phase == "repl" then
        error("undefined global '" .. tostring(k) .. "'", 2)
      end
      error("undefined global '" .. tostring(k) .. "' (globals of the pipeline file are "
            .. "not visible in tasks; declare values local)", 2)
    end,
    __metatable = false,
  })

  -- name -> value: "string.format" resolves through env (and its libraries)
  local builtins = setmetatable({}, { __index = function(t, name)
    local lib, fn = name:match("^([%w_]+)%.([%w_]+)$")
    local v
    if lib then
      if M.allow[lib] and lib ~= "base" then v = env[lib][fn] end
    elseif M.allow[name] and name ~= "base" then
      v = env[name]
    else
      v = rawget(env, name)
    end
    rawset(t, name, v)
    return v
  end })

  -- value -> name: every reachable function and library table
  local names = setmetatable({}, { __index = function(t, v)
    setmetatable(t, nil)
    local own = {}
    for _, k in ipairs(M.allow.base) do own[#own + 1] = k end
    for k in pairs(M.wrapped) do own[#own + 1] = k end
    for k in pairs(extra or {}) do own[#own + 1] = k end
    for _, k in ipairs(own) do
      local x = rawget(env, k)
      if type(x) == "function" then t[x] = k end
    end
    for lib, list in pairs(M.allow) do
      if lib ~= "base" then
        local tbl = env[lib]
        t[tbl] = lib
        for _, n in ipairs(list) do
          local x = tbl[n]
          if type(x) == "function" and t[x] == nil then t[x] = lib .. "." .. n end
        end
      end
    end
    t[env] = "_G"
    return rawget(t, v)
  end })
  return env, builtins, names
end

--- Turn any error value into a bounded string without calling user
-- metamethods (__tostring, __index, __concat are never triggered).
function M.describe_error(e, limit)
  limit = limit or 4096
  local t = type(e)
  local s
  if t == "string" then
    s = e
  elseif t == "number" or t == "boolean" or t == "nil" then
    s = tostring(e)
  elseif t == "table" then
    local m = rawget(e, "message")
    s = type(m) == "string" and m or "error object (table)"
  else
    s = "error object (" .. t .. ")"
  end
  if #s > limit then s = s:sub(1, limit) .. "... (truncated)" end
  return s
end

return M
