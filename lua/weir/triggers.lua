-- weir.triggers: runs started by other pipelines and by files, under
-- weir serve (the clock is weir.scheduler's, webhooks weir.hooks').
--
--   triggers = { after = { "ingest_orders", "ingest_customers" } }
--     a run starts when every listed pipeline has succeeded since this one
--     last ran (or, the first time, since a server first saw the trigger).
--   triggers = { files = { dir = "inbox", pattern = "*.csv", param = "path",
--                          settle = "2s" } }
--     each new, complete file in dir starts one run with its path
--     (relative to the pipeline's folder) in the string param `param`.
--   triggers = { datasets = { "postgres://db.internal:5432/dw/public.orders" } }
--     a run starts when a run of another pipeline has written one of the
--     datasets (the names weir.lineage records).
--
-- Exactly once: each fire is recorded with its key (after: the upstream
-- runs that caused it; files: the file's path, device, inode, size and
-- modification time) in the same transaction as its run
-- (store:trigger_fire), and a key fires at most once, ever, across
-- restarts and servers sharing a store. docs/adr/0024.
local json = require("weir.json")
local util = require("weir.util")
local format = string.format

local M = {}

--- How often (ms) a server looks at the triggers when nothing else asks.
M.EVERY = 1000

--- The default settle time of a files trigger (seconds).
M.SETTLE = 2

-- The Lua pattern of a file name glob: * any characters, ? one, [set]; a
-- name starting with "." never matches (a writer's temporary file).
local function glob_pattern(glob)
  local out, i = { "^" }, 1
  while i <= #glob do
    local ch = glob:sub(i, i)
    if ch == "*" then out[#out + 1] = ".*"
    elseif ch == "?" then out[#out + 1] = "."
    elseif ch == "[" then
      local close = glob:find("]", i + 2, true)
      if not close then return nil, "unclosed [ in " .. glob end
      local set = glob:sub(i + 1, close - 1)
      local neg = set:sub(1, 1) == "!"
      if neg then set = set:sub(2) end
      out[#out + 1] = "[" .. (neg and "^" or "") .. set:gsub("[%%%]]", "%%%0") .. "]"
      i = close
    else out[#out + 1] = ch:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0") end
    i = i + 1
  end
  out[#out + 1] = "$"
  return table.concat(out)
end
M.glob_pattern = glob_pattern

--- Semantic checks of def.triggers.after and .files; add(path, message).
function M.check_config(def, add)
  local t = def.triggers
  if type(t) ~= "table" then return end
  if type(t.after) == "table" then
    for i, name in ipairs(t.after) do
      if name == def.name then add(format("triggers.after[%d]", i), "a pipeline cannot follow itself") end
    end
  end
  if type(t.datasets) == "table" then
    local lineage = require("weir.lineage")
    for i, name in ipairs(t.datasets) do
      if type(name) == "string" then
        local ok, err = lineage.normalize(name)
        if not ok then add(format("triggers.datasets[%d]", i), err) end
      end
    end
  end
  local f = t.files
  if type(f) ~= "table" then return end
  if type(f.dir) == "string" then
    if f.dir:sub(1, 1) == "/" then
      add("triggers.files.dir", "must be relative to the pipeline's folder, got " .. util.show(f.dir))
    else
      for part in f.dir:gmatch("[^/]+") do
        if part == ".." then
          add("triggers.files.dir", "must stay under the pipeline's folder (no ..), got "
              .. util.show(f.dir))
          break
        end
      end
    end
  end
  if type(f.pattern) == "string" then
    local ok, err = glob_pattern(f.pattern)
    if not ok then add("triggers.files.pattern", err) end
  end
  if f.settle ~= nil and not util.duration(f.settle) then
    add("triggers.files.settle", select(2, util.duration(f.settle)))
  end
  local param = type(f.param) == "string" and f.param or "path"
  local decl = type(def.params) == "table" and def.params[param]
  if type(decl) ~= "table" then
    add("triggers.files.param", format("param %q (which receives the file's path) is not "
                                       .. "declared in params", param))
  elseif decl.type ~= "string" then
    add("triggers.files.param", format("param %q receives a path: its type must be string, "
                                       .. "got %s", param, tostring(decl.type)))
  end
end

local of_cache = setmetatable({}, { __mode = "k" }) -- P -> project -> triggers or false

--- The triggers a server watches for pipeline P (nil when none):
-- { after = { names }, files = { dir, pattern (Lua), param, settle (ms) },
-- datasets = { [normalized name] = true } }. project: the folder relative
-- dataset paths are taken from (weir.yaml's).
function M.of(P, project)
  local by = of_cache[P]
  if not by then
    by = {}
    of_cache[P] = by
  end
  local key = project or ""
  if by[key] == nil then by[key] = M.compile(P, project) or false end
  return by[key] or nil
end

--- M.of without the cache (each look of a server would redo it).
function M.compile(P, project)
  local t = P.def and P.def.triggers
  if type(t) ~= "table" or (not t.after and not t.files and not t.datasets) then return nil end
  local out = { after = t.after }
  if t.datasets then
    out.datasets = {}
    for _, name in ipairs(t.datasets) do
      local n = require("weir.lineage").normalize(name, project)
      if n then out.datasets[n] = true end
    end
  end
  if t.files then
    out.files = { dir = t.files.dir, pattern = glob_pattern(t.files.pattern or "*"),
                  param = t.files.param or "path",
                  settle = (t.files.settle and util.duration(t.files.settle) or M.SETTLE) * 1000 }
  end
  return out
end

---------------------------------------------------------------------------
-- after
---------------------------------------------------------------------------

-- Fire c when every upstream pipeline has a success newer than c's latest
-- run (and than the trigger's start). Returns the run id or nil.
local function tick_after(s, c, names, now)
  local store = s.store
  local since = tonumber(store:trigger_state(c.pipeline_id, "after", format("%.0f", now)))
  local floor = math.max(since, store:latest_created(c.pipeline_id) or 0)
  local key, cause = {}, {}
  for _, name in ipairs(names) do
    local last = store:latest_success(name)
    if not last or last.finished_at <= floor then return nil end
    key[#key + 1] = name .. "=" .. last.id
    cause[#cause + 1] = { pipeline = name, run_id = last.id }
  end
  return s:fire_key(c, "after", table.concat(key, ","), {},
                    { trigger = "after", cause = { after = cause } })
end

---------------------------------------------------------------------------
-- datasets
---------------------------------------------------------------------------

local PAGE = 1000

-- Fire c once for the writes to its datasets (by other pipelines' runs)
-- recorded since its cursor (a lineage row id), moving the cursor over
-- what it read; one page of writes a turn. The cursor starts at the
-- newest write when a server first sees the trigger: history never fires.
local function tick_datasets(s, c, wanted)
  local store = s.store
  local cur = store:trigger_state(c.pipeline_id, "dataset", "")
  if cur == "" then
    local last = 0
    while true do
      local rows = store:dataset_writes_after(last, PAGE)
      if #rows == 0 then break end
      last = rows[#rows].id
    end
    store:trigger_advance(c.pipeline_id, "dataset", "", tostring(last))
    return
  end
  local rows = store:dataset_writes_after(tonumber(cur), PAGE)
  if #rows == 0 then return end
  local hit, names, seen = nil, {}, {}
  for _, r in ipairs(rows) do
    if wanted[r.dataset] and r.pipeline ~= c.name then
      hit = r
      if not seen[r.dataset] then
        seen[r.dataset] = true
        names[#names + 1] = r.dataset
      end
    end
  end
  -- compare-and-set: another server that moved it first fired these
  if not store:trigger_advance(c.pipeline_id, "dataset", cur, tostring(rows[#rows].id)) then return end
  if hit then
    table.sort(names)
    s:fire_key(c, "dataset", tostring(hit.id), {},
               { trigger = "dataset", cause = { datasets = names, pipeline = hit.pipeline,
                                                run_id = hit.run_id } })
  end
end

---------------------------------------------------------------------------
-- files
---------------------------------------------------------------------------

local function lstat(path)
  local F = require("weir._ffi")
  local out = F.ffi.new("int64_t[4]")
  local kind = F.C.weir_ffi_lstat(path, out)
  return kind == F.C.WEIR_KIND_FILE, tonumber(out[0]), tonumber(out[1]),
         format("%.0f:%.0f", tonumber(out[2]), tonumber(out[3]))
end

-- Fire c once for each complete new file of spec; memo: this server's
-- memory of c's files ({ [rel] = key seen last, fired = { [key] = true } }).
local function tick_files(s, c, spec, memo, now)
  local base = c.P.base_dir
  local dir = util.join(base, spec.dir)
  local real = util.realpath(dir)
  if not real then return end -- not there (yet)
  local inside = false
  for _, root in ipairs(require("weir.run").roots_for(base)) do
    local r = util.realpath(root) or root
    if real == r or real:sub(1, #r + 1) == r .. "/" then inside = true end
  end
  if not inside then
    if not memo.warned then
      s.log(format("weir serve: files trigger of %s: %s is outside the pipeline's folder; ignored",
                   c.name, spec.dir))
      memo.warned = true
    end
    return
  end
  local names = util.list_dir(dir) or {}
  local seen, fired = {}, {}
  for _, name in ipairs(names) do
    if name:sub(1, 1) ~= "." and name:match(spec.pattern) then
      local rel = spec.dir:gsub("/+$", "") .. "/" .. name
      local file, size, mtime_ns, id = lstat(util.join(dir, name))
      if file then
        local key = format("%s|%s|%d|%.0f", rel, id, size, mtime_ns)
        seen[rel] = key
        if memo.fired[key] then
          fired[key] = true
        elseif now - mtime_ns / 1e6 >= spec.settle and (memo.last[rel] == nil or memo.last[rel] == key) then
          -- unchanged for settle: complete (a file renamed into place
          -- usually is at first sight)
          s:fire_key(c, "files", key, { [spec.param] = rel },
                     { trigger = "files", cause = { file = rel, size = size } })
          fired[key] = true
        end
      end
    end
  end
  memo.last, memo.fired = seen, fired
end

--- Look at every pipeline's triggers: every M.EVERY ms, and within 50 ms
-- when soon is set (a run just ended). Returns when to look again (ms).
function M.tick(s, now, soon)
  local due = s.next_trigger or 0
  if soon then due = math.min(due, s.last_trigger_tick and s.last_trigger_tick + 50 or 0) end
  if now < due then return s.next_trigger end
  s.last_trigger_tick = now
  s.files_memo = s.files_memo or {}
  local store = s.store
  for name, c in pairs(s.catalog) do
    local tr = M.of(c.P, s.conf and s.conf.project)
    if tr and not s:trigger_paused(c) then
      local mark = s.fired_keys and #s.fired_keys or 0
      store:begin()
      local ok, err = pcall(function()
        if tr.after then tick_after(s, c, tr.after, now) end
        if tr.datasets then tick_datasets(s, c, tr.datasets) end
        if tr.files then
          local memo = s.files_memo[name]
          if not memo then
            memo = { last = {}, fired = {} }
            s.files_memo[name] = memo
          end
          tick_files(s, c, tr.files, memo, now)
        end
      end)
      if ok then store:commit() else
        pcall(store.rollback, store)
        for i = #(s.fired_keys or {}), mark + 1, -1 do s.fired_keys[i] = nil end
        s.log(format("weir serve: triggers of %s: %s", name, tostring(err)))
      end
    end
  end
  s.next_trigger = now + M.EVERY
  return s.next_trigger
end

--- A run's cause as one line for weir show (from its options), or nil.
function M.describe(options, logical_time)
  if type(options) == "string" then options = json.decode(options) end
  if type(options) ~= "table" or not options.trigger then return nil end
  local cause, t = options.cause or {}, options.trigger
  if t == "schedule" or options.backfill then
    return format("%s%s", options.backfill and "backfill by " .. t or "schedule",
                  logical_time and (", logical time " .. logical_time) or "")
  elseif t == "after" then
    local parts = {}
    for _, u in ipairs(cause.after or {}) do parts[#parts + 1] = u.pipeline .. " (run " .. u.run_id .. ")" end
    return "after " .. table.concat(parts, ", ")
  elseif t == "files" then
    return "file " .. tostring(cause.file)
  elseif t == "dataset" then
    return format("dataset %s written by %s (run %s)", table.concat(cause.datasets or {}, ", "),
                  tostring(cause.pipeline), tostring(cause.run_id))
  elseif t == "webhook" then
    return "webhook"
  end
  return "API, by " .. tostring(t)
end

return M
