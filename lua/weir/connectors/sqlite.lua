-- weir.connectors.sqlite: SQLite through the C primitive
-- (connectors/sqlite.c, bulk.c): handles for trusted code (the metadata
-- store uses them) and the connector of tasks: ctx.sqlite, database
-- objects (query, exec, rows) and s:into(db, table, opts), a load in
-- one transaction with a ledger row. Values are always bound parameters;
-- statements are cached per handle. Operational errors return nil, err;
-- misuse raises.
local F = require("weir._ffi")
local stream = require("weir.stream")
local errors = require("weir.errors")
local native = require("weir._native")
local lineage = require("weir.lineage")
local ffi, C = F.ffi, F.C
local check = F.check
local type, tonumber, error, tostring, ipairs, pcall = type, tonumber, error, tostring, ipairs, pcall
local floor = math.floor
local format, concat, lower = string.format, table.concat, string.lower
local BATCH = stream.BATCH

local M = {}
local DB = {}
DB.__index = DB

--- SQL NULL where nil cannot stand (a row's column, an update's value): the
-- lightuserdata NULL, the same value as ctx.NULL and json.null.
local NULL = require("weir._native").NULL
M.NULL = NULL

local ROW, DONE = C.WEIR_SQL_ROW, C.WEIR_SQL_DONE
local T_INT, T_FLOAT, T_NULL = C.WEIR_SQL_INTEGER, C.WEIR_SQL_FLOAT, C.WEIR_SQL_NULL
local lenp = ffi.new("size_t[1]")

--- Open the database at path. opts: create (default true), readonly,
-- busy_ms (default 5000), name (for messages). Returns db or nil, err.
function M.open(path, opts)
  opts = opts or {}
  local out = ffi.new("weir_db *[1]")
  local rc = C.weir_ffi_db_open(path, opts.create == false and 0 or 1, opts.readonly and 1 or 0,
                                opts.busy_ms or 5000, out, F.errbuf, F.errlen)
  local ok, err = check(rc, "sqlite \"" .. (opts.name or path) .. "\"")
  if not ok then return nil, err end
  return setmetatable({ h = ffi.gc(out[0], C.weir_ffi_db_close), cache = {}, path = path },
                      DB)
end

--- Leave the WAL in place at close instead of checkpointing it (the
-- metadata store; SQLite still checkpoints every wal_autocheckpoint pages).
function DB:keep_wal() C.weir_ffi_db_keep_wal(self.h) end

--- Run statements without results (DDL, PRAGMA, BEGIN/COMMIT).
function DB:exec(sql)
  return check(C.weir_ffi_db_exec(self.h, sql, F.errbuf, F.errlen))
end

local function prepare(self, sql)
  local st = self.cache[sql]
  if st then return st end
  local out = ffi.new("weir_stmt *[1]")
  local rc = C.weir_ffi_db_prepare(self.h, sql, #sql, out, F.errbuf, F.errlen)
  if rc ~= C.WEIR_OK then return check(rc) end
  st = ffi.gc(out[0], C.weir_ffi_db_finalize)
  self.cache[sql] = st
  return st
end

local function bind(st, params, n)
  for i = 1, n do
    local v = params[i]
    local t = type(v)
    if t == "number" then
      if v == floor(v) and v >= -9007199254740992 and v <= 9007199254740992 then
        C.weir_ffi_db_bind_int64(st, i, v)
      else
        C.weir_ffi_db_bind_double(st, i, v)
      end
    elseif t == "string" then
      C.weir_ffi_db_bind_text(st, i, v, #v)
    elseif t == "boolean" then
      C.weir_ffi_db_bind_int64(st, i, v and 1 or 0)
    elseif v == nil or t == "userdata" then
      C.weir_ffi_db_bind_null(st, i)
    else
      error("weir.db: cannot bind parameter " .. i .. " of type " .. t, 3)
    end
  end
end

-- Column i of the current row; SQL NULL is `null` (nil when not given:
-- the metadata store's rows leave the key out, user rows carry NULL).
local function column(st, i, null)
  local t = C.weir_ffi_db_column_type(st, i)
  if t == T_INT then
    return tonumber(C.weir_ffi_db_column_int64(st, i))
  elseif t == T_FLOAT then
    return C.weir_ffi_db_column_double(st, i)
  elseif t == T_NULL then
    return null
  end
  local p = C.weir_ffi_db_column_bytes(st, i, lenp)
  return ffi.string(p, lenp[0])
end
M.column = column

--- Execute sql with params (array; params.n for trailing nils). Returns
-- the number of changed rows or nil, err.
function DB:run(sql, params)
  local st, err = prepare(self, sql)
  if not st then return nil, err end
  if params then bind(st, params, params.n or #params) end
  local rc = C.weir_ffi_db_step(st, F.errbuf, F.errlen)
  C.weir_ffi_db_reset(st)
  if rc < 0 then return check(rc) end
  return tonumber(C.weir_ffi_db_changes(self.h))
end

--- All rows of a query as an array of tables keyed by column name.
function DB:all(sql, params)
  local st, err = prepare(self, sql)
  if not st then return nil, err end
  if params then bind(st, params, params.n or #params) end
  local rows, names = {}, {}
  local nc = C.weir_ffi_db_column_count(st)
  for i = 0, nc - 1 do names[i] = ffi.string(C.weir_ffi_db_column_name(st, i)) end
  while true do
    local rc = C.weir_ffi_db_step(st, F.errbuf, F.errlen)
    if rc == DONE then break end
    if rc ~= ROW then C.weir_ffi_db_reset(st); return check(rc) end
    local row = {}
    for i = 0, nc - 1 do row[names[i]] = column(st, i) end
    rows[#rows + 1] = row
  end
  C.weir_ffi_db_reset(st)
  return rows
end

--- A cached prepared statement (the caller steps and resets it).
function DB:prepare(sql) return prepare(self, sql) end

--- A new, uncached statement for a stream: an open stream must never share
-- its statement with another query of the same text (a reset would restart
-- it). Finalized by the garbage collector, or by finalize(st).
function DB:prepare_fresh(sql)
  local out = ffi.new("weir_stmt *[1]")
  local rc = C.weir_ffi_db_prepare(self.h, sql, #sql, out, F.errbuf, F.errlen)
  if rc ~= C.WEIR_OK then return check(rc) end
  return ffi.gc(out[0], C.weir_ffi_db_finalize)
end

--- Finalize a statement from prepare_fresh now.
function M.finalize(st)
  C.weir_ffi_db_finalize(ffi.gc(st, nil))
end
M.bind = bind
M.ROW, M.DONE = ROW, DONE

--- Close the handle and its statements (safe twice).
function DB:close()
  if self.h then
    for k, st in pairs(self.cache) do
      C.weir_ffi_db_finalize(ffi.gc(st, nil))
      self.cache[k] = nil
    end
    C.weir_ffi_db_close(ffi.gc(self.h, nil))
    self.h = nil
  end
end

--- Quote an identifier for SQL ("a""b"); rejects empty names and NUL.
function M.quote(name)
  if type(name) ~= "string" or name == "" or name:find("%z") then
    error("weir.db: bad identifier " .. tostring(name), 2)
  end
  return '"' .. name:gsub('"', '""') .. '"'
end


-- ---- the connector: ctx.sqlite, its database objects, s:into(db, ...) ----

-- the attempt whose ctx opened the databases (one attempt per state)
local current
stream.kind("db", "weir.sqlite.", "a database", "db:")

-- database objects -------------------------------------------------------

local Db = {}
local function D(d, what) return stream.owned(d, "db", what) end

--- db:query(sql, params): a stream of the query's rows (bound params).
function Db.query(d, sql, params)
  local p = D(d, "query")
  if type(sql) ~= "string" then error("weir.sqlite.query: bad 'sql' (string expected)", 2) end
  local h = p.h
  local st, err = h:prepare_fresh(sql)
  if not st then error(format("sqlite %s: %s", p.name, tostring(err)), 0) end
  if params then M.bind(st, params, params.n or #params) end
  local nc = C.weir_ffi_db_column_count(st)
  local names = {}
  for i = 0, nc - 1 do names[i + 1] = ffi.string(C.weir_ffi_db_column_name(st, i)) end
  local A = current
  local done = false
  local read_column = M.column
  -- lineage: the tables the query names, else the database itself
  local reads = {}
  for i, t in ipairs(lineage.sql_tables(sql)) do
    reads[i] = A.dataset(lineage.sqlite(p.abs, A.project, t.name), "input")
  end
  if #reads == 0 then
    reads[1] = A.dataset("sqlite:" .. lineage.relative(p.abs, A.project), "input")
  end
  return stream.new_stream(function()
    if done then return nil end
    local batch, n = {}, 0
    while n < BATCH do
      local rc = C.weir_ffi_db_step(st, F.errbuf, F.errlen)
      if rc == M.DONE then done = true; M.finalize(st); break end
      if rc ~= M.ROW then error(format("sqlite %s: %s", p.name, F.errmsg()), 0) end
      local row = {}
      for i = 0, nc - 1 do row[names[i + 1]] = read_column(st, i, NULL) end
      n = n + 1
      batch[n] = row
    end
    A.stats.rows_in = A.stats.rows_in + n
    for i = 1, #reads do reads[i].rows = reads[i].rows + n end
    if n == 0 then return nil end
    return batch
  end, names, {})
end

--- db:exec(sql, params): run one statement; returns the changed rows.
function Db.exec(d, sql, params)
  local p = D(d, "exec")
  if type(sql) ~= "string" then error("weir.sqlite.exec: bad 'sql' (string expected)", 2) end
  local n, err = p.h:run(sql, params)
  if not n then error(format("sqlite %s: %s", p.name, tostring(err)), 0) end
  return n
end

--- db:rows(sql, params): all rows of a small query as an array.
function Db.rows(d, sql, params)
  return Db.query(d, sql, params):collect()
end

--- A table of database state p (a task's database object) to check
-- (weir.checks): its queries, read with NULL kept, in constant memory.
function M.dataset(p, tbl)
  local h, q = p.h, M.quote
  local T = { dialect = "sqlite", q = q, tbl = q(tbl), qualified = q }
  function T.rows(sql, params, fn)
    local st, err = h:prepare_fresh(sql)
    if not st then error(format("sqlite %s: %s", p.name, tostring(err)), 0) end
    if params then M.bind(st, params, params.n or #params) end
    local nc = C.weir_ffi_db_column_count(st)
    local names = {}
    for i = 0, nc - 1 do names[i] = ffi.string(C.weir_ffi_db_column_name(st, i)) end
    while true do
      local rc = C.weir_ffi_db_step(st, F.errbuf, F.errlen)
      if rc == DONE then break end
      if rc ~= ROW then
        local msg = F.errmsg()
        M.finalize(st)
        error(format("sqlite %s: %s", p.name, msg), 0)
      end
      local row = {}
      for i = 0, nc - 1 do row[names[i]] = column(st, i, NULL) end
      fn(row)
    end
    M.finalize(st)
  end
  function T.all(sql, params)
    local out = {}
    T.rows(sql, params, function(r) out[#out + 1] = r end)
    return out
  end
  local obj = stream.new_object("db", Db, p)
  return { kind = "sqlite", name = "sqlite:" .. p.name .. "#" .. tbl, table = tbl, T = T,
           obj = obj,
           stream = function() return Db.query(obj, "SELECT * FROM " .. q(tbl)) end }
end

--- ctx.sqlite for the attempt A (weir.connectors).
function M.context(A, X)
  current = A
  --- A SQLite database inside the roots (created if missing).
  function X.sqlite(p, opts)
    opts = opts or {}
    local abs = A.path(p)
    A.mkdirs(abs)
    -- ask the broker first: its refusal says why (SQLite would only say
    -- "unable to open database file")
    local ex = ffi.new("int32_t[1]")
    if C.weir_ffi_file_exists(abs, ex, F.errbuf, F.errlen) ~= 0 then
      error(p .. ": " .. F.errmsg(), 0)
    end
    local handle, err = M.open(abs, { create = opts.create ~= false, readonly = opts.readonly,
                                        name = p })
    if not handle then error(tostring(err), 0) end
    handle:exec("PRAGMA temp_store=MEMORY")
    handle:exec("PRAGMA journal_mode=" .. (opts.wal and "WAL" or "DELETE"))
    A.opened[#A.opened + 1] = function() handle:close() end
    return stream.new_object("db", Db, { h = handle, name = p, abs = abs })
  end
end

local function affinity(v)
  local t = type(v)
  if t == "number" then return v == math.floor(v) and "INTEGER" or "REAL" end
  if t == "boolean" then return "INTEGER" end
  return "TEXT"
end

local LEDGER = [[CREATE TABLE IF NOT EXISTS _weir_loads (
  run_id TEXT NOT NULL, task TEXT NOT NULL, seq INTEGER NOT NULL, target TEXT NOT NULL,
  mode TEXT NOT NULL, rows INTEGER NOT NULL, attempt INTEGER NOT NULL, loaded_at REAL NOT NULL,
  PRIMARY KEY (run_id, task, seq))]]

-- s:into(db, table, opts): load the stream into a SQLite table in one
-- transaction. opts.mode: "append" (default), "replace" (the table's rows
-- are replaced), "upsert" (opts.key: column or columns; rows with the same
-- key are updated). The table is created from the stream's columns when it
-- does not exist. A ledger row keyed by (run, task, load number) commits
-- in the same transaction, so a retried attempt does not load twice.
-- Returns { rows = n, table = name, mode = mode, skipped = bool }.
local function sink(p, dp, tbl, opts)
  if type(tbl) ~= "string" or tbl == "" then error("weir.stream.into: bad 'table' (string expected)", 2) end
  opts = opts or {}
  local mode = opts.mode or "append"
  if mode ~= "append" and mode ~= "replace" and mode ~= "upsert" then
    error(format("weir.stream.into: bad mode %q (append, replace or upsert)", tostring(mode)), 2)
  end
  local keys = opts.key
  if type(keys) == "string" then keys = { keys } end
  if mode == "upsert" and (type(keys) ~= "table" or #keys == 0) then
    error("weir.stream.into: mode \"upsert\" needs opts.key", 2)
  end
  local A = current
  local h = dp.h
  local q = M.quote
  local seq = A.next_seq()
  local job = A.job
  local function sqlcheck(ok, err)
    if ok == nil then error(format("sqlite %s: %s", dp.name, tostring(err)), 0) end
    return ok
  end

  sqlcheck(h:exec(LEDGER))
  sqlcheck(h:exec("BEGIN IMMEDIATE"))
  local ok, res = pcall(function()
    local done = sqlcheck(h:all("SELECT rows, target, mode FROM _weir_loads "
                                .. "WHERE run_id = ? AND task = ? AND seq = ?",
                                { job.run_id or "", job.task or "", seq }))[1]
    if done and (done.target ~= tbl or done.mode ~= mode) then
      -- the task's loads come in another order than in the attempt that
      -- committed this one: skipping or loading could both be wrong
      error(format("load %d of task %s went to %s (%s) in an earlier attempt, not to %s (%s): "
                   .. "a task must make its loads in the same order in every attempt",
                   seq, tostring(job.task), done.target, done.mode, tbl, mode), 0)
    end
    if done then
      -- drain the source so the stream is consumed as it would be
      while p.pull() do end
      return { rows = done.rows, table = tbl, mode = mode, skipped = true }
    end
    local first = p.pull()
    local n = 0
    if not first and mode == "replace" then
      -- nothing to load: replacing still empties an existing table
      local exists = sqlcheck(h:all("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 { tbl }))[1]
      if exists then sqlcheck(h:exec("DELETE FROM " .. q(tbl))) end
    end
    if first then
      local cols = stream.sink_columns(p, first)
      local exists = sqlcheck(h:all("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 { tbl }))[1]
      if not exists then
        local defs = {}
        for i, c in ipairs(cols) do
          local sample
          for r = 1, #first do
            local v = first[r][c]
            if v ~= nil and v ~= NULL then sample = v; break end
          end
          defs[i] = q(c) .. " " .. affinity(sample)
        end
        if keys then
          local kq = {}
          for i, k in ipairs(keys) do kq[i] = q(k) end
          defs[#defs + 1] = "PRIMARY KEY (" .. concat(kq, ", ") .. ")"
        end
        sqlcheck(h:exec("CREATE TABLE " .. q(tbl) .. " (" .. concat(defs, ", ") .. ")"))
      elseif mode == "upsert" then
        local kq = {}
        for i, k in ipairs(keys) do kq[i] = q(k) end
        sqlcheck(h:exec("CREATE UNIQUE INDEX IF NOT EXISTS " .. q(tbl .. "__weir_key") .. " ON "
                     .. q(tbl) .. " (" .. concat(kq, ", ") .. ")"))
      end
      if mode == "replace" then sqlcheck(h:exec("DELETE FROM " .. q(tbl))) end
      local cq, ph = {}, {}
      for i, c in ipairs(cols) do cq[i] = q(c); ph[i] = "?" end
      local sql = "INSERT INTO " .. q(tbl) .. " (" .. concat(cq, ", ") .. ") VALUES ("
                  .. concat(ph, ", ") .. ")"
      if mode == "upsert" then
        local kset, kq = {}, {}
        for i, k in ipairs(keys) do kset[k] = true; kq[i] = q(k) end
        local sets = {}
        for _, c in ipairs(cols) do
          if not kset[c] then sets[#sets + 1] = q(c) .. " = excluded." .. q(c) end
        end
        sql = sql .. " ON CONFLICT (" .. concat(kq, ", ") .. ") DO "
              .. (#sets > 0 and ("UPDATE SET " .. concat(sets, ", ")) or "NOTHING")
      end
      local st = sqlcheck(h:prepare(sql))
      local insert = native.db_insert
      local batch = first
      local loaded = 0
      while batch do
        if mode == "upsert" then
          -- a NULL key matches nothing: ON CONFLICT would add such a row
          -- again on every load. One rule with the PostgreSQL sink: refused
          for i = 1, #batch do
            local row = batch[i]
            for _, k in ipairs(keys) do
              local v = row[k]
              if v == nil or v == NULL then
                local e = errors.new("data", format("upsert into %s: row %d has a NULL key "
                                                    .. "(%s); a NULL key matches no row, so "
                                                    .. "every load would add it again: give "
                                                    .. "every row its key, or load with mode "
                                                    .. "append", tbl, loaded + i, k))
                e.transient = false
                error(e, 0)
              end
            end
          end
        end
        loaded = loaded + #batch
        -- bound and stepped in C (weir._native.db_insert), a batch a call
        local ok, err = pcall(insert, st, batch, cols, 1, #batch)
        if not ok then error(format("sqlite %s: table %s: %s", dp.name, tbl, tostring(err)), 0) end
        n = n + #batch
        batch = p.pull()
      end
    end
    sqlcheck(h:run("INSERT INTO _weir_loads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                { job.run_id or "", job.task or "", seq, tbl, mode, n, job.attempt or 0,
                  native.now() / 1000 }))
    return { rows = n, table = tbl, mode = mode, skipped = false }
  end)
  if not ok then
    h:exec("ROLLBACK")
    error(res, 0)
  end
  sqlcheck(h:exec("COMMIT"))
  A.stats.rows_out = A.stats.rows_out + res.rows
  -- lineage: the table and its columns as they are now (a skipped load
  -- stands for the earlier attempt's, so it counts its rows)
  local d = A.dataset(lineage.sqlite(dp.abs, A.project, tbl), "output")
  d.rows = d.rows + res.rows
  local info = h:all("SELECT name, type FROM pragma_table_info(?)", { tbl })
  if info then
    local cols = {}
    for i, c in ipairs(info) do cols[i] = { name = c.name, type = lower(c.type) } end
    d.columns = cols
  end
  A.written[#A.written + 1] = { sqlite = dp.name, table = tbl, state = dp,
                                shown = "sqlite:" .. dp.name .. "#" .. tbl }
  return res
end
stream.sinks.db = sink

return M
