-- weir.pipeline: load a pipeline file and check it.
--
-- Lua files are evaluated in a worker (weir._define) and come back as data;
-- YAML and JSON files are parsed here as data. Every form then goes through
-- the same steps: JSON Schema (schemas/pipeline.schema.json), then semantic
-- checks (dependencies exist, acyclic, durations/sizes/params). All errors
-- are collected and reported at once, each with its path and, where known,
-- the file line.
local json = require("weir.json")
local document = require("weir.document")
local util = require("weir.util")
local ser = require("weir._ser")
local native = require("weir._native")
local F = require("weir._ffi")
local cron = require("weir.cron")
local tz = require("weir.tz")
local checks = require("weir.checks")
local type, pairs, ipairs, tostring, format = type, pairs, ipairs, tostring, string.format
local sort, concat = table.sort, table.concat

local M = {}

M.DEFAULTS = {
  retries = 0, retry_delay = 1, retry_backoff = 2, retry_max_delay = 300,
  timeout = 3600, memory = 256 * 1024 * 1024, output_max = 1024 * 1024,
  log_max = 64 * 1024,
}
M.DEFINE_TIMEOUT_MS = tonumber(os.getenv("WEIR_LOAD_TIMEOUT") or "") or 10000
M.DEFINE_MEMORY = 256 * 1024 * 1024
local SCHEMA = "weir/schemas/pipeline.schema.json"

--- SHA-256 hex digest of s.
function M.sha256(s)
  local out = F.ffi.new("char[65]")
  F.C.weir_ffi_sha256_hex(s, #s, out)
  return F.ffi.string(out, 64)
end

M.read = document.read

local function kind_of(path)
  local ext = path:match("%.(%w+)$")
  ext = ext and ext:lower()
  if ext == "lua" then return "lua" end
  if ext == "yaml" or ext == "yml" then return "yaml" end
  if ext == "json" then return "json" end
  return nil
end

local function abspath(path)
  if path:sub(1, 1) == "/" then return util.normalize(path) end
  local buf = F.ffi.new("char[4096]")
  if F.C.weir_ffi_getcwd(buf, 4096) ~= 0 then error("cannot read the current directory", 2) end
  return util.normalize(F.ffi.string(buf) .. "/" .. path)
end
M.abspath = abspath

-- The definition phase as a machine for weir.engine.drive (the loop the
-- engine's runs use): one `define` job on slot 0, its result, or the
-- worker's death, a signal, or the deadline (the worker is killed and its
-- exit awaited, so the pool is clean afterwards).
local Define = {}
Define.__index = Define

function Define:step(evs)
  local mono = self.mono
  if not self.deadline then
    self.deadline = mono() + M.DEFINE_TIMEOUT_MS
    return { { 0, M.DEFINE_MEMORY, { self.payload }, { #self.payload } } }
  end
  local name = self.chunkname:sub(2)
  for _, ev in ipairs(evs) do
    if self.killed then
      if ev.kind == "exit" then self.reaped = true end
    elseif ev.slot == 0 and ev.kind == "result" then
      -- from a worker that ran user code: decoded as plain data by the
      -- executor (the C decoder, never the Lua one)
      local result = ev.result
      if type(result) ~= "table" then
        result = { status = "failed",
                   error = name .. ": the worker loading it sent an unreadable result" }
      end
      self.result = result
      return {}
    elseif ev.slot == 0 and ev.kind == "exit" then
      self.err = format("%s: the worker loading it died (status %d)", name, ev.status)
      return {}
    elseif ev.kind == "signal" then
      self.err = format("%s: loading interrupted by signal %d", name, ev.status)
      M.interrupted = ev.status
      return {}
    end
  end
  if not self.killed and mono() >= self.deadline then
    self.exec:kill(0)
    self.killed, self.reap_until = true, mono() + 10000
    self.err = format("%s: loading took longer than %s (killed)", name,
                      util.human_duration(M.DEFINE_TIMEOUT_MS / 1000))
  end
  return {}
end

function Define:done()
  if self.killed then return self.reaped or self.mono() >= self.reap_until end
  return self.result ~= nil or self.err ~= nil
end

function Define:wait_ms()
  if self.killed then return 100 end
  return math.max(0, math.min(self.deadline - self.mono(), 1000))
end

-- Evaluate a Lua pipeline in a worker; returns data, lines or nil, err.
local function define_in_worker(exec, source, chunkname)
  local executor = require("weir.executor")
  local own = false
  if not exec then
    local e, err = executor.new({ workers = 1 })
    if not e then return nil, tostring(err) end
    exec, own = e, true
  end
  local m = setmetatable({ exec = exec, chunkname = chunkname, mono = executor.mono,
                           payload = ser.encode({ kind = "define", source = source,
                                                  chunkname = chunkname }) }, Define)
  local ok, perr = pcall(require("weir.engine").drive, m, exec)
  local result, err = m.result, m.err
  if not ok then err = tostring(perr) end
  if own then exec:close() end
  if not result then return nil, err end
  if result.status ~= "success" then
    local msg = result.error or "failed"
    if result.kind == "memory" then
      msg = chunkname:sub(2) .. ": loading exceeded the memory limit of "
            .. util.human_size(M.DEFINE_MEMORY)
    end
    return nil, msg
  end
  local data, derr = native.ser_decode(result.def, 1, json.array_mt)
  if data == false then derr = chunkname:sub(2) .. ": the definition is not plain data" end
  if type(data) ~= "table" then return nil, derr or "the definition is not a table" end
  return data, result.lines, result.fns or {}, result.check_fns or {}
end


local function is_array(t)
  return type(t) == "table" and getmetatable(t) == json.array_mt
end

-- A dependency cycle as "a -> b -> a" (dependency order), or nil. Depth
-- first, with an explicit stack: a chain of 100,000 tasks is no deeper
-- for it than a chain of two.
local function detect_cycle(tasks, names)
  local color, stack, next_dep = {}, {}, {}
  local function deps(n)
    local t = tasks[n]
    return type(t) == "table" and type(t.after) == "table" and t.after or {}
  end
  for _, root in ipairs(names) do
    if not color[root] then
      color[root] = 1
      stack[1], next_dep[1] = root, 1
      local top = 1
      while top > 0 do
        local n = stack[top]
        local list = deps(n)
        local i = next_dep[top]
        local d = list[i]
        if d == nil then
          color[n] = 2
          stack[top] = nil
          top = top - 1
        else
          next_dep[top] = i + 1
          if tasks[d] ~= nil then
            if color[d] == 1 then
              -- the stack goes from dependant to dependency: reverse it
              local from
              for k = 1, top do if stack[k] == d then from = k end end
              local rev = { d }
              for k = top, from, -1 do rev[#rev + 1] = stack[k] end
              if #rev <= 12 then return concat(rev, " -> ") end
              return format("%s -> ... (%d more) -> %s", concat(rev, " -> ", 1, 6), #rev - 11,
                            concat(rev, " -> ", #rev - 4))
            elseif not color[d] then
              color[d] = 1
              top = top + 1
              stack[top], next_dep[top] = d, 1
            end
          end
        end
      end
    end
  end
  return nil
end

-- Durations and sizes of a task or of the defaults, parsed as the engine
-- will parse them.
local function check_options(t, base, add)
  for _, k in ipairs({ "timeout", "retry_delay", "retry_max_delay" }) do
    if t[k] ~= nil and not util.duration(t[k]) then
      add(base .. "." .. k, select(2, util.duration(t[k])))
    end
  end
  for _, k in ipairs({ "memory", "output_max", "log_max" }) do
    if t[k] ~= nil and not util.size(t[k]) then add(base .. "." .. k, select(2, util.size(t[k]))) end
  end
  if t.memory ~= nil and util.size(t.memory) and util.size(t.memory) < 1024 * 1024 then
    add(base .. ".memory", "must be at least 1MB")
  end
end

-- A task's output and log travel back in one result frame, which the
-- supervisor refuses past WEIR_FRAME_MAX (64 MB, exec.h): their caps must
-- leave room for the rest of the record.
M.RESULT_ROOM = 60 * 1024 * 1024
local function check_result_size(t, d, base, add)
  local sizes, where = {}, {}
  for _, k in ipairs({ "output_max", "log_max" }) do
    local v, path = t[k], base .. "." .. k
    if v == nil then v, path = d[k], "defaults." .. k end
    sizes[k] = v == nil and M.DEFAULTS[k] or util.size(v)
    where[k] = path
  end
  if sizes.output_max and sizes.log_max and sizes.output_max + sizes.log_max > M.RESULT_ROOM then
    local k = sizes.output_max >= sizes.log_max and "output_max" or "log_max"
    add(where[k], format("output_max + log_max must be at most %s (a result travels in one "
                         .. "frame of at most 64 MB), got %s", util.human_size(M.RESULT_ROOM),
                         util.human_size(sizes.output_max + sizes.log_max)))
  end
end

M.SCHEDULE_DEFAULTS = { catchup = "latest", max_catchup = 100, jitter = 0 }

-- The schedule: its cron expression parses, its time zone (its own or the
-- pipeline's `timezone`) exists in the tz database, its jitter parses.
local function check_schedule(def, add)
  local s = def.schedule
  if type(def.timezone) == "string" then
    local ok, err = tz.load(def.timezone)
    if not ok then add("timezone", err) end
  end
  if type(s) == "string" then
    local ok, err = cron.parse(s)
    if not ok then add("schedule", err) end
  elseif type(s) == "table" then
    if type(s.cron) == "string" then
      local ok, err = cron.parse(s.cron)
      if not ok then add("schedule.cron", err) end
    end
    if type(s.timezone) == "string" then
      local ok, err = tz.load(s.timezone)
      if not ok then add("schedule.timezone", err) end
    end
    if s.jitter ~= nil and not util.duration(s.jitter) then
      add("schedule.jitter", select(2, util.duration(s.jitter)))
    end
  end
end

--- The schedule of a checked definition as plain data: { cron, timezone,
-- catchup, max_catchup, jitter (seconds) }, or nil when it has none.
function M.normalize_schedule(def)
  local s = def.schedule
  if s == nil then return nil end
  if type(s) == "string" then s = { cron = s } end
  local D = M.SCHEDULE_DEFAULTS
  return {
    cron = s.cron, timezone = s.timezone or def.timezone or "UTC",
    catchup = s.catchup or D.catchup, max_catchup = s.max_catchup or D.max_catchup,
    jitter = s.jitter ~= nil and util.duration(s.jitter) or D.jitter,
  }
end

-- A param default may name the run's time: ${logical_time} (RFC 3339,
-- UTC) and ${logical_date} (YYYY-MM-DD in the pipeline's time zone). A
-- scheduled or backfilled run gives its logical time, any other run the
-- time it is created.
local TIME_REFS = { logical_time = true, logical_date = true }

-- The zone ${logical_date} is taken in: the schedule's, the pipeline's, UTC.
local function zone_name(def)
  local s = def.schedule
  return type(s) == "table" and s.timezone or def.timezone or "UTC"
end

-- default v with its references to the time lt (ms) filled in
local function expand_default(def, v, lt)
  if type(v) ~= "string" or not v:find("${", 1, true) then return v end
  return (v:gsub("%${([%w_]+)}", function(name)
    if name == "logical_time" then return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(lt / 1000)) end
    if name == "logical_date" then
      local zone = tz.load(zone_name(def)) or tz.load("UTC")
      local y, m, d = tz.to_local(zone, math.floor(lt / 1000))
      return format("%04d-%02d-%02d", y, m, d)
    end
  end))
end

--- Semantic checks beyond the schema. Appends {path, message} to errs.
local function semantic(def, errs)
  local function add(path, msg) errs[#errs + 1] = { path = path, message = msg } end
  local tasks = type(def.tasks) == "table" and def.tasks or {}
  local names = {}
  for n in pairs(tasks) do names[#names + 1] = tostring(n) end
  sort(names)
  for _, n in ipairs(names) do
    local t = tasks[n]
    if type(t) == "table" then
      local base = "tasks." .. n
      if type(t.after) == "table" then
        for i, d in ipairs(t.after) do
          if type(d) == "string" and tasks[d] == nil then
            add(format("%s.after[%d]", base, i), format("unknown task %q", d))
          elseif d == n then
            add(format("%s.after[%d]", base, i), "a task cannot depend on itself")
          end
        end
      end
      check_options(t, base, add)
      checks.validate(t.checks, base .. ".checks", add)
      check_result_size(t, type(def.defaults) == "table" and def.defaults or {}, base, add)
    end
  end
  if type(def.defaults) == "table" then check_options(def.defaults, "defaults", add) end
  local cycle = detect_cycle(tasks, names)
  if cycle then add("tasks", "dependency cycle " .. cycle) end
  if type(def.params) == "table" then
    for name, p in pairs(def.params) do
      if type(p) == "table" and type(p.default) == "string" then
        for ref in p.default:gmatch("%${([^}]*)}") do
          if not TIME_REFS[ref] then
            add("params." .. tostring(name) .. ".default",
                format("unknown reference ${%s} (a default may use ${logical_time} and "
                       .. "${logical_date})", ref))
          end
        end
      end
      if type(p) == "table" and type(p.pattern) == "string" then
        local re, rerr = require("weir.regex").compile(p.pattern)
        if not re then add("params." .. tostring(name) .. ".pattern", tostring(rerr)) end
      end
      if type(p) == "table" and p.default ~= nil then
        local ok, why = M.coerce_param(p, expand_default(def, p.default, 0))
        if ok == nil then add("params." .. tostring(name) .. ".default", why) end
      end
    end
  end
  check_schedule(def, add)
  if type(def.triggers) == "table" then
    require("weir.hooks").check_config(def.triggers.webhook, def.params, add)
    require("weir.triggers").check_config(def, add)
  end
end

--- Coerce a parameter value (a string from the command line, or a
-- default) to the parameter's type; nil when it does not fit.
-- Decimal only (no hex, no "inf"/"nan"), finite; an integer also below
-- 2^53 in magnitude, where every integer is exact (a longer one would
-- arrive rounded).
local function decimal(v, integer)
  if type(v) == "string" then
    local pat = integer and "^[+-]?%d+$" or "^[+-]?%d*%.?%d*[eE]?[+-]?%d*$"
    if not v:match(pat) or not v:match("%d") then return nil end
    v = tonumber(v)
  end
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then return nil end
  if integer and (v ~= math.floor(v) or v >= 2 ^ 53 or v <= -2 ^ 53) then return nil end
  return v
end

-- a date YYYY-MM-DD that exists in the calendar
local function valid_date(y, m, d)
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  return m >= 1 and m <= 12 and d >= 1 and d <= tz.month_days(y, m)
end

-- dates and times: the text as given, when it is a real one
local function date_text(v, with_time)
  if type(v) ~= "string" then return nil end
  local y, m, d, rest = v:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y or not valid_date(y, m, d) then return nil end
  if not with_time then return rest == "" and v or nil end
  local h, mi, sec, frac, zone = rest:match("^[T ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
  if not h or frac == "." or tonumber(h) > 23 or tonumber(mi) > 59 or tonumber(sec) > 60 then
    return nil
  end
  if zone ~= "Z" then
    local zh, zm = zone:match("^[+-](%d%d):(%d%d)$")
    if not zh or tonumber(zh) > 23 or tonumber(zm) > 59 then return nil end
  end
  return v
end

M.PARAM_TYPES = { "string", "integer", "number", "boolean", "date", "datetime", "array",
                  "object" }
local HINT = { integer = "decimal digits, within +-2^53", number = "a finite decimal number",
               string = "not valid UTF-8", date = "YYYY-MM-DD", boolean = "true or false",
               datetime = "YYYY-MM-DDTHH:MM:SS with Z or an offset, RFC 3339",
               array = "a JSON array", object = "a JSON object" }

-- one value of p's type (a list's item), or nil and why
local function coerce_one(p, v)
  local t = p.type
  local ok = v
  if t == "string" then
    if type(v) ~= "string" or json._utf8_invalid_at(v) then ok = nil end
  elseif t == "integer" or t == "number" then
    ok = decimal(v, t == "integer")
  elseif t == "boolean" then
    if v == "true" then ok = true elseif v == "false" then ok = false end
    if type(ok) ~= "boolean" then ok = nil end
  elseif t == "date" or t == "datetime" then
    ok = date_text(v, t == "datetime")
  elseif t == "array" or t == "object" then
    -- JSON text on the command line (templates' array and object params)
    if type(v) == "string" then ok = json.decode(v) end
    if type(ok) ~= "table" or ((getmetatable(ok) == json.array_mt) ~= (t == "array")
                                and next(ok) ~= nil) then
      ok = nil
    end
  end
  if ok == nil then
    return nil, format("expected %s, got %s%s", tostring(t), util.show(v),
                       HINT[t] and " (" .. HINT[t] .. ")" or "")
  end
  v = ok
  if type(p.enum) == "table" and #p.enum > 0 then
    local found = false
    for _, e in ipairs(p.enum) do if e == v then found = true end end
    if not found then
      local opts = {}
      for i, e in ipairs(p.enum) do opts[i] = util.show(e) end
      return nil, format("must be one of %s, got %s", concat(opts, ", "), util.show(v))
    end
  end
  -- dates and times compare as text (same length and form); numbers as numbers
  if p.minimum ~= nil and type(v) == type(p.minimum) and v < p.minimum then
    return nil, format("must be at least %s, got %s", util.show(p.minimum), util.show(v))
  end
  if p.maximum ~= nil and type(v) == type(p.maximum) and v > p.maximum then
    return nil, format("must be at most %s, got %s", util.show(p.maximum), util.show(v))
  end
  if type(p.pattern) == "string" and type(v) == "string" then
    local re, rerr = require("weir.regex").compile(p.pattern)
    if not re then return nil, "bad pattern: " .. tostring(rerr) end
    if not re:test(v) then
      return nil, format("must match the pattern %s, got %s", util.show(p.pattern, 80),
                         util.show(v))
    end
  end
  return v
end

--- Coerce a parameter value (a string from the command line, or a
-- default) to the parameter's type and check its constraints (enum,
-- minimum, maximum, pattern); a list param takes comma-separated items
-- (or an array as its default) and gives an array. Returns the value, or
-- nil and why.
function M.coerce_param(p, v)
  if not p.list then return coerce_one(p, v) end
  local items = {}
  if type(v) == "string" then
    if v ~= "" then
      for item in (v .. ","):gmatch("([^,]*),") do items[#items + 1] = item:match("^%s*(.-)%s*$") end
    end
  elseif type(v) == "table" then
    for i, x in ipairs(v) do items[i] = x end
  else
    return nil, format("expected a list of %s, got %s", tostring(p.type), util.show(v))
  end
  local out = setmetatable({}, json.array_mt)
  for i, x in ipairs(items) do
    local cv, why = coerce_one(p, x)
    if cv == nil then return nil, format("item %d: %s", i, why) end
    out[i] = cv
  end
  return out
end

--- Resolve run parameters from overrides (name -> string). Returns the
-- params table or nil, message.
--- Whether a param default of P names the run's time (its params then
-- differ from one logical time to the next).
function M.defaults_use_time(P)
  for _, p in pairs(P.def.params or {}) do
    if type(p) == "table" and type(p.default) == "string" and p.default:find("${", 1, true) then
      return true
    end
  end
  return false
end

--- The params of a run of P: overrides (name -> value; strings from the
-- command line are coerced) over the defaults, the defaults' time
-- references filled in with lt (ms; default now). Returns them, or nil,
-- message.
function M.resolve_params(P, overrides, lt)
  local out, defs = {}, P.def.params or {}
  for k, v in pairs(overrides or {}) do
    local p = defs[k]
    if not p then return nil, format("unknown param %q (the pipeline declares: %s)", k,
                                     concat(M.param_names(P), ", ")) end
    local cv, why = M.coerce_param(p, v)
    if cv == nil then return nil, format("param %q: %s", k, why) end
    out[k] = cv
  end
  for k, p in pairs(defs) do
    if out[k] == nil then
      if p.default == nil then return nil, format("param %q is required (no default)", k) end
      out[k] = M.coerce_param(p, expand_default(P.def, p.default, lt or os.time() * 1000))
    end
  end
  return out
end

function M.param_names(P)
  local n = {}
  for k in pairs(P.def.params or {}) do n[#n + 1] = k end
  sort(n)
  if #n == 0 then n[1] = "none" end
  return n
end

--- Load and check the pipeline in path (or given source). opts.exec: an
-- executor to evaluate Lua files in. Returns P or nil, errors (an array of
-- { path, message, line }) with errors.file set.
function M.load(path, opts)
  opts = opts or {}
  local kind = opts.kind or kind_of(path)
  local file = path
  local fail = function(list) list.file = file; return nil, list end
  local templates = require("weir.templates")
  -- the template catalog (weir.templates), built only when a file uses
  -- a template: opts.catalog, or a function that makes it, or the one of
  -- the weir.yaml found from here
  local catalog = opts.catalog
  local function get_catalog()
    if type(catalog) == "function" then catalog = catalog() end
    catalog = catalog or templates.default_catalog()
    return catalog
  end
  if not opts.source and path:match("^template:") then
    -- `weir run template:NAME[@PIN]`: the library's file, run from here
    local entry, terr = templates.entry_for_path(path, get_catalog())
    if not entry then return fail({ { path = "", message = terr } }) end
    opts = setmetatable({ source = entry.source, kind = "lua" }, { __index = opts })
    kind = "lua"
  end
  if not kind then
    return fail({ { path = "", message = "unknown file type (expected .lua, .yaml, .yml or .json)" } })
  end
  local source = opts.source
  if not source then
    local s, err = M.read(path)
    if not s then return fail({ { path = "", message = "cannot read: " .. tostring(err) } }) end
    source = s
  end

  local def, lines, blobs, check_blobs
  local chunkname = "=" .. path
  if kind == "lua" then
    local d, l, b, cb = define_in_worker(opts.exec, source, chunkname)
    if not d then
      local msg = tostring(l)
      local quoted = path:gsub("%p", "%%%0")
      local ln, rest = msg:match("^" .. quoted .. ":(%d+): (.*)$")
      rest = rest or msg:match("^" .. quoted .. ": (.*)$")
      return fail({ { path = "", message = rest or msg, line = tonumber(ln) } })
    end
    def, lines, blobs, check_blobs = d, l, b, cb
  else
    local v, l = document.decode(source, kind, path)
    if v == nil then return fail({ { path = "", message = l } }) end
    def, lines = v, l
  end
  if type(def) ~= "table" or is_array(def) then
    return fail({ { path = "", message = "expected a pipeline object at the top level" } })
  end

  -- take the run functions out; the schema sees a marker string
  local fns, errs = {}, {}
  if type(def.tasks) == "table" and not is_array(def.tasks) then
    for name, t in pairs(def.tasks) do
      if type(t) == "table" then
        local r = t.run
        if kind == "lua" and type(name) == "string" and type(blobs[name]) == "string" then
          -- compiled code only ever comes from the definition phase
          fns[name] = { blob = blobs[name] }
          t.run = "<function>"
        elseif kind == "lua" and r ~= nil then
          errs[#errs + 1] = { path = "tasks." .. tostring(name) .. ".run",
                              message = "expected function, got " .. util.show(r) }
          t.run = "<invalid>"
        elseif type(r) == "string" then
          local f, err = load(r, "=" .. path .. ":tasks." .. tostring(name), "t", {})
          if not f then
            errs[#errs + 1] = { path = "tasks." .. tostring(name) .. ".run", message = err }
          end
          fns[name] = { src = r }
        end
        if t.after ~= nil and type(t.after) == "table" and next(t.after) == nil then
          setmetatable(t.after, json.array_mt)
        end
        if type(t.checks) == "table" then
          checks.normalize(t.checks)
          local cfns = kind == "lua" and type(name) == "string" and check_blobs[name] or {}
          for i, c in ipairs(t.checks) do
            if type(c) == "table" and c.check == "custom" then
              local p = format("tasks.%s.checks[%d].run", tostring(name), i)
              if kind == "lua" and type(cfns[i]) ~= "string" and c.run ~= nil then
                errs[#errs + 1] = { path = p, message = "expected function, got " .. util.show(c.run) }
              elseif kind ~= "lua" and type(c.run) == "string" then
                local f, err = load(c.run, "=" .. path .. ":" .. p, "t", {})
                if not f then errs[#errs + 1] = { path = p, message = err } end
              end
            end
          end
        end
      end
    end
  end
  if type(def.params) == "table" then
    for _, p in pairs(def.params) do
      if type(p) == "table" and type(p.enum) == "table" and next(p.enum) == nil then
        setmetatable(p.enum, json.array_mt)
      end
    end
  end

  local _, serrs = document.validator(SCHEMA):validate(def)
  local own = {}
  local tparams, used, trefs, aliases = {}, {}, {}, {}
  if type(def.tasks) == "table" then
    for name, t in pairs(def.tasks) do
      if type(t) == "table" and t.run == nil and t.uses == nil then
        own[#own + 1] = { path = "tasks." .. tostring(name),
                          message = "a task needs run (a function) or uses (a template, NAME@VERSION)" }
      elseif type(t) == "table" and t.run ~= nil and t.uses ~= nil then
        own[#own + 1] = { path = "tasks." .. tostring(name),
                          message = "a task has either run or uses, not both" }
      end
    end
  end
  if type(def.tasks) == "table" and not is_array(def.tasks) then
    tparams, used, trefs, aliases = templates.expand(def, fns, {
      catalog = get_catalog, exec = opts.exec, template_stack = opts.template_stack,
      cache = opts.cache,
    }, function(p, msg) own[#own + 1] = { path = p, message = msg } end)
  end
  semantic(def, own)
  -- one error per path: the semantic check's message is the clearer one
  document.merge(errs, own, nil, true)
  document.merge(errs, serrs, nil, true)
  if #errs > 0 then return fail(document.locate(errs, lines)) end

  -- a pipeline that uses templates is another version when one of them
  -- changes: the hash covers theirs
  local hash = M.sha256(source)
  if #used > 0 then
    local parts = { hash }
    for i, u in ipairs(used) do parts[i + 1] = u.name .. "@" .. u.version .. ":" .. u.hash end
    hash = M.sha256(concat(parts, "\n"))
  end
  local P = {
    name = def.name, def = def, fns = fns, lines = lines or {}, source = source,
    hash = hash, kind = kind, path = abspath(path), file = path, templates = used,
  }
  P.base_dir = util.dirname(P.path)
  P.schedule = M.normalize_schedule(def)
  P.tasks = {}
  local d = def.defaults or {}
  for name, t in pairs(def.tasks) do
    local function opt(k, conv)
      local v = t[k]
      if v == nil then v = d[k] end
      if v == nil then return M.DEFAULTS[k] end
      return conv and conv(v) or v
    end
    P.tasks[name] = {
      name = name,
      after = t.after and { unpack(t.after) } or {},
      retries = opt("retries"),
      retry_delay = opt("retry_delay", util.duration),
      retry_backoff = opt("retry_backoff"),
      retry_max_delay = opt("retry_max_delay", util.duration),
      timeout = opt("timeout", util.duration),
      memory = opt("memory", util.size),
      output_max = opt("output_max", util.size),
      log_max = opt("log_max", util.size),
      fn = fns[name],
      checks = t.checks,
      check_fns = kind == "lua" and t.checks and check_blobs[name] or nil,
      params = tparams[name],
      param_refs = trefs[name],
      input_names = aliases[name],
    }
  end
  return P
end

--- Format load errors one per line: "file:line: path: message".
function M.format_errors(errs)
  local out = {}
  for _, e in ipairs(errs) do
    local where = errs.file or "?"
    if e.line then where = where .. ":" .. e.line end
    local p = (e.path == nil or e.path == "") and "" or (e.path .. ": ")
    out[#out + 1] = where .. ": " .. p .. e.message
  end
  return concat(out, "\n")
end

return M
