-- weir.connectors: the registry of connectors, and the connector side of a
-- task's ctx.
--
-- A connector is one vertical slice: its C primitives (connectors/NAME.c
-- and its codecs, declared to the runtime by the generated connector
-- table) and one Lua module, lua/weir/connectors/NAME.lua, the only place
-- the rest of weir learns about it. A module offers what it has of:
--
--   type            the `type` of its weir.yaml connections ("postgres")
--   normalize(name, raw, base, f)  a weir.yaml connection checked and
--                   normalized (weir.config calls it; f: its field readers)
--   preload         WEIR_PRELOAD_* bits workers need before their lock-down
--                   when a connection of this type exists
--   context(A, X)   adds its ctx functions to X (ctx.csv, ctx.sqlite) for
--                   the attempt A (below)
--   for_task(cfg, A, opened)  the object ctx.source(name)/ctx.sink(name)
--                   give for a connection of this type
--   ping(cfg)       one round trip for weir health; raises on failure
--   describe(cfg)   the endpoint, safe to show and to name datasets by
--   close_all()     closes its pools (a worker's last act)
--
-- and registers, when loaded, the sink of the objects it hands out in
-- weir.stream.sinks[kind] and its stream methods with weir.stream.method.
-- Connectors depend on weir.stream, never the reverse. Adding one: a C unit
-- with its connector description, a module here, and a line in TYPES (a
-- weir.yaml type) or BUILTIN (ctx functions of every attempt).
local F = require("weir._ffi")
local C = F.C
local util = require("weir.util")
local stream = require("weir.stream")
local type, pairs, ipairs, error, tostring = type, pairs, ipairs, error, tostring
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

--- weir.yaml connection types and their modules.
M.TYPES = {
  postgres = "weir.connectors.postgres",
  redis = "weir.connectors.redis",
}

--- Connectors every attempt's ctx has (files, SQLite).
M.BUILTIN = { "weir.connectors.file", "weir.connectors.sqlite" }

--- The module of a weir.yaml connection type, or nil.
function M.get(kind)
  local mod = M.TYPES[kind]
  return mod and require(mod) or nil
end

--- The weir.yaml connection types, sorted.
function M.types()
  local out = {}
  for k in pairs(M.TYPES) do out[#out + 1] = k end
  sort(out)
  return out
end

local fdp = F.ffi.new("int32_t[1]")

--- The connector functions of one attempt (weir._ctx calls it once, on
-- first use). Builds the attempt's context A, given to every connector:
-- job, stats (rows_in, rows_out, rejected), opened (closers run when the attempt
-- ends), log(line), next_seq() (the attempt's load number, for ledgers),
-- path(p) (p resolved against the pipeline's folder, or an error when it
-- is outside the roots), open_fd(abs, flags, shown) (through the broker),
-- mkdirs(abs) (the missing folders of abs inside the roots),
-- dataset(name, role) (the lineage entry of the dataset called name,
-- role "input" or "output": { dataset, role, rows, columns }, one per
-- name and role, kept in stats.datasets; weir.lineage makes the names),
-- project (the folder dataset paths are relative to). Returns X:
-- ctx.path, ctx.rows, ctx.source/ctx.sink (connection) and what each
-- built-in connector adds.
function M.context(job, stats, opened, log)
  local X = {}
  local roots = {}
  for i, r in ipairs(job.roots or {}) do roots[i] = util.normalize(r) end
  local base = job.base_dir or "/"
  local load_seq = 0
  -- written: the datasets the task's loads committed ({ sqlite = name,
  -- table, state } / { connection = name, table, state } / { csv = path }
  -- / { jsonl = path }, and shown), for its declared checks;
  -- check_results: what its checks found (weir.checks)
  local A = { job = job, stats = stats, opened = opened, log = log, written = {},
              check_results = {}, project = job.project_dir or base }
  X.attempt = A

  local datasets, by_key = stats.datasets or {}, {}
  stats.datasets = datasets
  function A.dataset(name, role)
    local k = role .. " " .. name
    local d = by_key[k]
    if not d then
      d = { dataset = name, role = role, rows = 0 }
      by_key[k] = d
      datasets[#datasets + 1] = d
    end
    return d
  end

  function X.path(p)
    if type(p) ~= "string" or p == "" then error("ctx.path: bad path (string expected)", 3) end
    local abs = util.normalize(util.join(base, p))
    for _, r in ipairs(roots) do
      if abs == r or abs:sub(1, #r + 1) == r .. "/" then return abs end
    end
    error(format("path %q is outside the allowed roots", p), 3)
  end
  A.path = X.path

  function A.open_fd(abs, flags, shown)
    local rc = C.weir_ffi_file_open(abs, flags, 420, fdp, F.errbuf, F.errlen)
    if rc ~= 0 then error(format("%s: %s", shown, F.errmsg()), 0) end
    return fdp[0]
  end

  function A.mkdirs(abs)
    local dir = util.dirname(abs)
    local acc = ""
    for part in dir:gmatch("[^/]+") do
      acc = acc .. "/" .. part
      local ok = false
      for _, r in ipairs(roots) do
        if #acc > #r and acc:sub(1, #r + 1) == r .. "/" then ok = true end
      end
      if ok then C.weir_ffi_file_mkdir(acc, F.errbuf, F.errlen) end
    end
  end

  function A.next_seq()
    load_seq = load_seq + 1
    return load_seq
  end

  --- A stream over a Lua array of rows (small data, tests), or over a
  -- generator function returning one row per call and nil at the end
  -- (large synthetic inputs, in constant memory).
  function X.rows(list, opts)
    local pull
    if type(list) == "function" then
      local gen, done = list, false
      pull = function()
        if done then return nil end
        local batch, n = {}, 0
        while n < stream.BATCH do
          local row = gen()
          if row == nil then done = true; break end
          if type(row) ~= "table" then
            error(format("ctx.rows: the generator returned a %s (a row table or nil expected)",
                         type(row)), 0)
          end
          n = n + 1
          batch[n] = row
        end
        stats.rows_in = stats.rows_in + n
        if n == 0 then return nil end
        return batch
      end
    elseif type(list) == "table" then
      local i, n = 1, #list
      pull = function()
        if i > n then return nil end
        local batch = {}
        local last = math.min(n, i + stream.BATCH - 1)
        for k = i, last do batch[#batch + 1] = list[k] end
        stats.rows_in = stats.rows_in + (last - i + 1)
        i = last + 1
        return batch
      end
    else
      error("ctx.rows: expected an array of rows or a generator function", 3)
    end
    return stream.new_stream(pull, opts and opts.columns, {})
  end

  --- A connection of weir.yaml by name (ctx.source and ctx.sink), one
  -- object per name and attempt.
  local conns = {}
  function X.connection(name, what)
    local c = conns[name]
    if c then return c end
    local all = job.connections or {}
    local cfg = type(name) == "string" and all[name]
    if not cfg then
      local known = {}
      for k in pairs(all) do known[#known + 1] = k end
      sort(known)
      -- a configuration error: no retry can cure it
      stats.permanent = format("ctx.%s: no connection %s in %s", what, tostring(name),
                               job.config_where or "weir.yaml")
      error(format("%s (%s)", stats.permanent,
                   #known > 0 and "known: " .. concat(known, ", ") or "none configured"), 3)
    end
    local connector = M.get(cfg.type)
    if not connector then
      error(format("ctx.%s: connection %s has unknown type %s", what, name, tostring(cfg.type)), 3)
    end
    c = connector.for_task(cfg, A, opened)
    conns[name] = c
    return c
  end


  --- The dataset d names, for weir.checks: { sqlite = path, table } or
  -- { connection = name, table } (a database's state given as d.state
  -- when the task wrote it), { csv = path } or { jsonl = path }.
  function X.dataset(d)
    if d.sqlite then
      local st = d.state or stream.state(X.sqlite(d.sqlite, { create = false }))
      return require("weir.connectors.sqlite").dataset(st, d.table)
    elseif d.connection then
      local st = d.state or stream.state(X.connection(d.connection, "source"))
      local mod = M.get(st.cfg and st.cfg.type or "")
      if not (mod and mod.dataset) then
        error(format("connection %s: checks run on PostgreSQL tables, SQLite tables, CSV and "
                     .. "JSON Lines files", tostring(d.connection)), 0)
      end
      return mod.dataset(st, d.table)
    end
    return require("weir.connectors.file").dataset(A, X, d.csv and "csv" or "jsonl",
                                                   d.csv or d.jsonl)
  end

  for _, mod in ipairs(M.BUILTIN) do require(mod).context(A, X) end
  return X
end

return M
