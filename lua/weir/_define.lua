-- weir._define: the definition phase, run inside a worker.
--
-- Loads a Lua pipeline file as text in a sandbox that offers `pipeline`
-- and `task` and no I/O, then turns what it returns into plain data: each
-- task's `run` closure becomes a serialised blob (weir._ser) and every
-- table built by pipeline{}/task{} remembers the line it was built on, so
-- validation errors can point at the file. The supervisor never runs user
-- code: it only receives this data.
local type, pairs, next, error, tostring, load, pcall = type, pairs, next, error, tostring,
  load, pcall
local setmetatable, rawget, select, tonumber = setmetatable, rawget, select, tonumber
local getinfo = debug.getinfo
local sandbox = require("weir.sandbox")
local ser = require("weir._ser")

local M = {}

local MAX_DEPTH = 64

--- Evaluate job.source (chunk name job.chunkname). Returns a result table:
-- { status = "success", def = <ser string>, lines = { path = line } } or
-- { status = "failed", error = message }.
function M.run(job)
  local marks = setmetatable({}, { __mode = "k" })
  local log = {}

  local function mark(kind)
    return function(t)
      if type(t) ~= "table" then
        error(kind .. " { ... } expects a table, got " .. type(t), 2)
      end
      -- `return pipeline { ... }` is a tail call: its caller's line is
      -- gone (-1); then no line is better than a wrong one
      local info = getinfo(2, "l")
      local line = info and info.currentline
      marks[t] = { kind = kind, line = line and line > 0 and line or nil }
      return t
    end
  end

  local template_use = mark("template")
  --- template("name@1", { with }, { after = { ... } }): a group of tasks
  -- from a template, for `include = { group = template(...) }`
  local function template(ref, with, opts)
    if type(ref) ~= "string" then
      error("template(ref, with): bad 'ref' (string NAME@VERSION expected, got "
            .. type(ref) .. ")", 2)
    end
    if with ~= nil and type(with) ~= "table" then
      error("template(ref, with): bad 'with' (table expected, got " .. type(with) .. ")", 2)
    end
    return template_use({ uses = ref, with = with,
                          after = type(opts) == "table" and opts.after or nil })
  end
  local env, _, names = sandbox.new({ pipeline = mark("pipeline"), task = mark("task"),
                                      template = template },
    function(line) if #log < 100 then log[#log + 1] = line end end, "define")

  -- the state was created with the collector stopped (runtime/lstate.c)
  collectgarbage("restart", -1)
  local fn, err = load(job.source, job.chunkname, "t", env)
  if not fn then return { status = "failed", error = err } end
  local ok, def = pcall(fn)
  if not ok then
    local exceeded = select(4, require("weir._native").memory())
      and string.find(sandbox.describe_error(def), "not enough memory", 1, true)
    return { status = "failed", kind = exceeded and "memory" or "error",
             error = sandbox.describe_error(def) }
  end
  if type(def) ~= "table" or not marks[def] or marks[def].kind ~= "pipeline" then
    return { status = "failed",
             error = job.chunkname:sub(2) .. ": the file must return pipeline { ... }" }
  end

  local lines = { [""] = marks[def].line }
  local seen = {}
  -- task name -> serialised run closure, kept apart from the data so that
  -- no value written in the file can ever pass for compiled code
  local fns = {}
  -- task name -> { [i] = serialised run of its i-th check } (custom checks)
  local check_fns = {}

  local function convert(v, path, depth)
    local t = type(v)
    if t == "table" then
      if seen[v] then error(path .. ": a table cannot contain itself", 0) end
      if depth > MAX_DEPTH then error(path .. ": nested too deeply", 0) end
      seen[v] = true
      local m = marks[v]
      if m then lines[path] = m.line end
      local out = {}
      for k, x in next, v do
        local kp = path == "" and tostring(k) or path .. "." .. tostring(k)
        if type(k) == "number" then kp = path .. "[" .. tostring(k) .. "]" end
        out[k] = convert(x, kp, depth + 1)
      end
      seen[v] = nil
      return out
    elseif t == "function" then
      local task = path:match("^tasks%.([^.]+)%.run$")
      if task and depth == 3 then
        local blob, e = ser.encode(v, { builtins = names, env = env, name = path })
        if not blob then error(e, 0) end
        fns[task] = blob
      end
      local ctask, ci = path:match("^tasks%.([^.]+)%.checks%[(%d+)%]%.run$")
      if ctask and depth == 5 then
        local blob, e = ser.encode(v, { builtins = names, env = env, name = path })
        if not blob then error(e, 0) end
        check_fns[ctask] = check_fns[ctask] or {}
        check_fns[ctask][tonumber(ci)] = blob
      end
      return "<function>"
    elseif t == "userdata" or t == "thread" or t == "cdata" then
      return "<" .. t .. ">"
    end
    return v
  end

  local cok, data = pcall(convert, def, "", 0)
  if not cok then return { status = "failed", error = tostring(data) } end
  -- line of each task even when marks were lost (plain tables)
  if type(data.tasks) == "table" then
    for name in pairs(data.tasks) do
      local p = "tasks." .. tostring(name)
      if not lines[p] then lines[p] = lines["tasks"] or lines[""] end
    end
  end
  local blob, e = ser.encode(data)
  if not blob then return { status = "failed", error = e } end
  return { status = "success", def = blob, fns = fns, check_fns = check_fns, lines = lines,
           log = log,
           tasks_line = rawget(lines, "tasks") }
end

return M
