-- weir._ctx: the `ctx` a task's run function receives.
--
-- Plain data (params, inputs, run_id, task, attempt) is copied into the
-- sandbox; functions are closures over this attempt's private state, so
-- user code can call them but never reach what they hold. Connectors are
-- loaded on first use.
local type, pairs, ipairs, select, tostring, tonumber, error =
  type, pairs, ipairs, select, tostring, tonumber, error
local format = string.format

local M = {}

local function copy(v, null)
  if type(v) ~= "table" then return v end
  if v == null then return nil end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x, null) end
  return out
end

--- Build the ctx for job. log(line) records a log line; stats counts rows.
-- Returns ctx, a function that closes everything the task opened, and
-- the attempt's side for weir._attempt: io() (the connector functions,
-- loaded on first use) and opened() (whether they were).
function M.new(job, log, stats)
  local opened = {}
  local ctx = {
    run_id = job.run_id,
    -- the run: its id and, for a scheduled fire or a backfill, its
    -- logical time (ISO 8601 UTC text; absent otherwise)
    run = { id = job.run_id, logical_time = job.logical_time },
    task = job.task,
    attempt = job.attempt,
    pipeline = job.pipeline,
    params = copy(job.params),
    inputs = {},
  }
  if job.inputs and next(job.inputs) then
    -- outputs were encoded by trusted code; runtime/json.c decodes them
    local native = require("weir._native")
    for name, text in pairs(job.inputs) do
      ctx.inputs[name] = copy(assert(native.json_decode(text)), native.NULL)
    end
  end

  --- ctx.log(fmt, ...) or ctx.log(value): one line in the attempt's log.
  function ctx.log(first, ...)
    if select("#", ...) > 0 and type(first) == "string" then
      local ok, s = pcall(format, first, ...)
      log(ok and s or tostring(first))
    else
      log(tostring(first))
    end
  end

  local io_mod
  local function io()
    if not io_mod then
      io_mod = require("weir.connectors").context(job, stats, opened, log)
    end
    return io_mod
  end

  --- ctx.path(p): the absolute path p resolves to (relative to the
  -- pipeline's folder); fails when outside the allowed roots.
  function ctx.path(p) return io().path(p) end
  --- ctx.csv(path, opts): a stream of the CSV file's rows.
  function ctx.csv(p, opts) return io().csv(p, opts) end
  --- ctx.jsonl(path, opts): a stream of the JSON Lines file's rows.
  function ctx.jsonl(p, opts) return io().jsonl(p, opts) end
  --- ctx.sqlite(path): a SQLite database (query, exec, into target).
  function ctx.sqlite(p, opts) return io().sqlite(p, opts) end
  --- ctx.rows(list | fn): a stream over a Lua array of row tables, or
  -- over fn's rows (one per call, nil at the end) in constant memory.
  function ctx.rows(list, opts) return io().rows(list, opts) end
  --- ctx.source(name) / ctx.sink(name): the connection called name in
  -- weir.yaml (PostgreSQL or Redis); the same object either way.
  function ctx.source(name) return io().connection(name, "source") end
  function ctx.sink(name) return io().connection(name, "sink") end
  --- ctx.NULL: SQL NULL in rows of every connector (not nil: rows keep the
  -- key); the lightuserdata NULL, so also json.null.
  ctx.NULL = require("weir._native").NULL
  --- ctx.check(db, table, checks): run data-quality checks on a table of
  -- a database or connection from ctx, now; their results are stored
  -- with the attempt's. Raises when a check of severity "fail" fails.
  function ctx.check(db, tbl, rules)
    local checks = require("weir.checks")
    local st = require("weir.stream").state(db)
    if not st or (st.kind ~= "db" and st.kind ~= "pg") then
      error("ctx.check: bad 'db' (a database from ctx.sqlite or a connection from ctx.sink "
            .. "expected)", 2)
    end
    if st.tx then error("ctx.check: bad 'db' (check on the connection, not a transaction)", 2) end
    if type(tbl) ~= "string" or tbl == "" then error("ctx.check: bad 'table' (string expected)", 2) end
    local list, err = checks.from_rules(rules)
    if not list then error("ctx.check: " .. err, 2) end
    local X = io()
    local D = X.dataset(st.kind == "db" and { sqlite = st.name, table = tbl, state = st }
                        or { connection = st.cfg.name, table = tbl, state = st })
    local results = checks.run(D, list, function(c, dataset)
      -- what a check reads is not the task's rows in
      local before = stats.rows_in
      local r = { pcall(c.run, ctx, dataset) }
      stats.rows_in = before
      if not r[1] then error(r[2], 0) end
      return unpack(r, 2, table.maxn(r))
    end)
    local all = X.attempt.check_results
    for _, r in ipairs(results) do all[#all + 1] = r end
    local why = checks.failure(results)
    if why then error(format("check %s failed: %s", tbl, why), 0) end
    local summary = { checks = "passed" }
    for i, r in ipairs(results) do
      if list[i].check == "row_count" then summary.row_count = tonumber(r.observed) end
      if r.status == "warn" then summary.warnings = (summary.warnings or 0) + 1 end
    end
    return summary
  end
  --- ctx.ident(name): a SQL identifier quoted ("a.b" is schema a, table
  -- b: each part quoted), for SQL a task builds from names it was given;
  -- values go as bound parameters, never into the text.
  function ctx.ident(name)
    if type(name) ~= "string" or name == "" or name:find("%z") then
      error("ctx.ident: bad name (non-empty string without NUL expected)", 2)
    end
    local parts = {}
    for part in (name .. "."):gmatch("([^.]*)%.") do
      if part == "" then error(format("ctx.ident: bad name %q (empty part)", name), 2) end
      parts[#parts + 1] = '"' .. part:gsub('"', '""') .. '"'
    end
    return table.concat(parts, ".")
  end
  --- ctx.fail(message): fail the attempt with a message.
  function ctx.fail(msg) error(tostring(msg), 2) end

  -- a name ctx does not have (a typo) says what it has
  local names = {}
  for k in pairs(ctx) do names[#names + 1] = k end
  table.sort(names)
  setmetatable(ctx, { __metatable = false, __index = function(_, k)
    local util = require("weir.util")
    local near = type(k) == "string" and util.closest(k, names)
    error(format("ctx.%s does not exist%s; ctx has: %s", tostring(k),
                 near and format(" (did you mean ctx.%s?)", near) or "",
                 table.concat(names, ", ")), 2)
  end })
  -- an input of a task this one does not run after says which it has;
  -- one it runs after that returned nothing (or was skipped) is nil
  local deps = {}
  for _, d in ipairs(job.deps or {}) do deps[d] = true end
  setmetatable(ctx.inputs, { __metatable = false, __index = function(_, k)
    if deps[k] then return nil end
    local have = {}
    for d in pairs(deps) do have[#have + 1] = d end
    table.sort(have)
    error(format("ctx.inputs.%s: this task does not run after a task %s (%s)", tostring(k),
                 tostring(k), #have > 0 and "inputs: " .. table.concat(have, ", ")
                   .. "; add it to after = { ... } to use its output"
                 or "it runs after no task: add after = { \"" .. tostring(k) .. "\" }"), 2)
  end })

  local function close()
    for i = #opened, 1, -1 do
      pcall(opened[i])
      opened[i] = nil
    end
  end
  return ctx, close, { io = io, opened = function() return io_mod ~= nil end }
end

return M
