-- weir._ctx: the `ctx` a task's run function receives.
--
-- Plain data (params, inputs, run_id, task, attempt) is copied into the
-- sandbox; functions are closures over this attempt's private state, so
-- user code can call them but never reach what they hold. Connectors are
-- loaded on first use.
local type, pairs, select, tostring, error = type, pairs, select, tostring, error
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
-- Returns ctx and a function that closes everything the task opened.
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
    -- outputs were encoded by trusted code; cjson (C) decodes them fast
    local cjson = require("cjson")
    for name, text in pairs(job.inputs) do
      ctx.inputs[name] = copy(cjson.decode(text), cjson.null)
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
  --- ctx.rows(list): a stream over a Lua array of row tables.
  function ctx.rows(list, opts) return io().rows(list, opts) end
  --- ctx.source(name) / ctx.sink(name): the connection called name in
  -- weir.yaml (PostgreSQL or Redis); the same object either way.
  function ctx.source(name) return io().connection(name, "source") end
  function ctx.sink(name) return io().connection(name, "sink") end
  --- ctx.NULL: SQL NULL in rows of every connector (not nil: rows keep the
  -- key); the lightuserdata NULL, so also cjson.null (cjson is not loaded
  -- here: a state that loaded it cannot be snapshotted).
  ctx.NULL = require("weir._native").NULL
  --- ctx.check(db, table, rules): data quality checks; raises on failure.
  function ctx.check(db, tbl, rules) return io().check(db, tbl, rules) end
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

  local function close()
    for i = #opened, 1, -1 do
      pcall(opened[i])
      opened[i] = nil
    end
  end
  return ctx, close
end

return M
