-- weir.db: SQLite through the C primitive (connectors/sqlite.c).
--
-- Used by the metadata store in the supervisor and by the SQLite connector
-- in workers. Values are always bound parameters; statements are cached
-- per handle. Operational errors return nil, err; misuse raises.
local F = require("weir._ffi")
local ffi, C = F.ffi, F.C
local check = F.check
local type, tonumber, error = type, tonumber, error
local floor = math.floor

local M = {}
local DB = {}
DB.__index = DB

--- SQL NULL where nil cannot stand (a row's column, an update's value): the
-- lightuserdata NULL, the same value as ctx.NULL, cjson.null and json.null.
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

return M
