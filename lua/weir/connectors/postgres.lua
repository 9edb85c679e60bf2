-- weir.pg: PostgreSQL connections for tasks (ctx.source / ctx.sink) and
-- for trusted code (the metadata store, `weir health`).
--
-- The C side (connectors/pg.c) keeps a pool per worker process and
-- connection name, prepares statements once per connection and builds rows
-- in C. This module is policy: which pool, the breaker around every call,
-- errors that name the connection (never the DSN or password) and say
-- whether a retry can help, streams (COPY out, or a cursor when the query
-- has parameters) and the sink modes, each one atomic transaction fenced
-- by a ledger row so a retried or killed attempt never loads twice.
local F = require("weir._ffi")
local ffi, C = F.ffi, F.C
local native = require("weir._native")
local breaker = require("weir.breaker")
local errors = require("weir.errors")
local pg_exec, pg_run, pg_release = native.pg_exec, native.pg_run, native.pg_release
local type, pairs, ipairs, tostring, tonumber, error, pcall, select, unpack =
  type, pairs, ipairs, tostring, tonumber, error, pcall, select, unpack
local format, concat, find = string.format, table.concat, string.find
local util = require("weir.util")

local stream = require("weir.stream")
local lineage = require("weir.lineage")
local M = {}
stream.kind("pg", "weir.postgres.", "a PostgreSQL connection", "db:")

local BATCH = 1000

-- a new attempt state: pooled connections are reset before their first
-- use in it (pg.c)
C.weir_ffi_pg_new_epoch()
local NULL = native.NULL -- SQL NULL (ctx.NULL)

-- SQLSTATEs a retry can cure: connection trouble (class 08), serialization
-- failure, deadlock, the server shutting down or starting, too many
-- connections, lock not available.
local TRANSIENT = { ["40001"] = true, ["40P01"] = true, ["57P01"] = true, ["57P02"] = true,
                    ["57P03"] = true, ["53300"] = true, ["55P03"] = true }
local function transient(msg)
  local code = tostring(msg):match("^%[(%w%w%w%w%w)%]")
  return code ~= nil and (code:sub(1, 2) == "08" or TRANSIENT[code] == true)
end
M.transient = transient


-- Raise the error object of a failure on connection cfg: msg is what the
-- C side raised ("[SQLSTATE] message") or plain text; an error object
-- passes unchanged. code: the status's name when not the SQLSTATE's.
local function fail(cfg, msg, is_transient, code)
  if errors.is(msg) then error(msg, 0) end
  local text = tostring(msg)
  local state = text:match("^%[(%w%w%w%w%w)%]")
  if state and state:find("^WEIR") then state = nil end   -- weir's own, not the server's
  if not code then
    code = not state and "invalid" or state:sub(1, 2) == "08" and "closed" or "sql"
  end
  local e = errors.new(code, format("postgres %s: %s", cfg.name, text))
  e.sqlstate, e.transient = state, is_transient and true or false
  error(e, 0)
end

--- A quoted identifier. Names longer than PostgreSQL's 63 bytes are
-- refused: the server would truncate them silently, into each other.
local function quote(name)
  if type(name) ~= "string" or name == "" then
    error(format("bad identifier %s (non-empty string expected)", tostring(name)), 0)
  end
  if #name > 63 then
    error(format("identifier %q is %d bytes; PostgreSQL's limit is 63", name, #name), 0)
  end
  if name:find("%z") then error("identifier contains a NUL byte", 0) end
  return '"' .. name:gsub('"', '""') .. '"'
end
M.quote = quote

--- Split "schema.table" (or take { schema =, name = }): schema, table.
local function split_name(t)
  if type(t) == "table" then return t.schema, t.name or t.table end
  if type(t) ~= "string" then error("bad table name (string expected)", 0) end
  local s, n = t:match("^([^.]+)%.(.+)$")
  if s then return s, n end
  return nil, t
end
local function qualified(t)
  local s, n = split_name(t)
  return (s and quote(s) .. "." or "") .. quote(n)
end
M.qualified = qualified

-- pools -----------------------------------------------------------------

local pools = {}   -- name -> { pool cdata, cfg, stamp }

-- libpq's keyword for each file of a connection's tls
local TLS_KEYWORD = { ca = "sslrootcert", cert = "sslcert", key = "sslkey", crl = "sslcrl" }

-- "/proc/self/fd/N": a memory file holding text (the same text, the same file)
local function memfile(text)
  local fd = ffi.new("int32_t[1]")
  F.check(C.weir_ffi_memfile_new(text, #text, fd, F.errbuf, F.errlen))
  return "/proc/self/fd/" .. fd[0]
end

--- libpq keywords and values for cfg: the connection fields, cfg.options
-- (more keywords, in name order) and the session settings, cfg.session or
-- those the codec expects.
local function conninfo(cfg)
  local keys, vals = {}, {}
  local function kv(k, v)
    if v ~= nil and v ~= "" then keys[#keys + 1] = k; vals[#vals + 1] = tostring(v) end
  end
  kv("host", cfg.host)
  kv("hostaddr", cfg.hostaddr)
  kv("port", cfg.port)
  kv("dbname", cfg.database)
  kv("user", cfg.user)
  kv("password", cfg.password)
  kv("sslmode", cfg.sslmode)
  -- TLS material: PEM text read by the supervisor, given to libpq as
  -- memory files (workers cannot open files; runtime/include/weir/memfile.h)
  if cfg.tls then
    for _, k in ipairs({ "ca", "cert", "key", "crl" }) do
      local pem = cfg.tls[k]
      if pem then kv(TLS_KEYWORD[k], memfile(pem)) end
    end
  end
  kv("connect_timeout", math.max(2, math.ceil((cfg.connect_timeout_ms or 10000) / 1000)))
  local extra = {}
  for k in pairs(cfg.options or {}) do
    if k ~= "options" then extra[#extra + 1] = k end
  end
  table.sort(extra)
  for _, k in ipairs(extra) do kv(k, cfg.options[k]) end
  if not (cfg.options and cfg.options.application_name) then kv("application_name", "weir") end
  kv("client_encoding", "UTF8")
  -- text values as the codec expects them; the server drops a statement
  -- within a second of its client dying (a SIGKILLed attempt)
  kv("options", cfg.session or format("-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres "
                       .. "-c extra_float_digits=3 -c client_connection_check_interval=1000 "
                       .. "-c statement_timeout=%d", cfg.statement_timeout_ms or 0))
  return keys, vals
end
M.conninfo = conninfo

local popts = ffi.new("weir_pg_pool_opts")

-- Set up the C pool of cfg.name for cfg (once per cfg).
local function pool_of(cfg)
  if cfg.resolve_error then fail(cfg, "[08001] " .. cfg.resolve_error, true, "io") end
  local p = pools[cfg.name]
  if p and p.cfg == cfg then return end
  local pool = cfg.pool or {}
  local ok, err = M.set_pool(cfg.name, cfg, {
    min = pool.min or 0, max = pool.max or 4,
    idle_timeout_ms = pool.idle_timeout_ms or 60000,
    max_lifetime_ms = pool.max_lifetime_ms or 1800000,
    validate_after_ms = pool.validate_after_ms or 30000,
    max_result_bytes = cfg.max_result_bytes or 64 * 1024 * 1024,
  })
  if not ok then fail(cfg, err.message, true, err.code) end
  pools[cfg.name] = { cfg = cfg }
end

--- The pool called name (in this process) for the connection cfg (as
-- conninfo takes it), with o: min, max, idle_timeout_ms, max_lifetime_ms,
-- validate_after_ms, max_result_bytes (0: no cap). Kept when its settings
-- are the same, else replaced. Returns true, or nil, err. Check out with
-- weir._native.pg_acquire(name). The metadata store uses it too.
function M.set_pool(name, cfg, o)
  local keys, vals = conninfo(cfg)
  local ck = ffi.new("const char *[?]", #keys + 1)
  local cv = ffi.new("const char *[?]", #vals + 1)
  for i = 1, #keys do ck[i - 1] = keys[i]; cv[i - 1] = vals[i] end
  popts.min_size = o.min
  popts.max_size = o.max
  popts.idle_timeout_ms = o.idle_timeout_ms
  popts.max_lifetime_ms = o.max_lifetime_ms
  popts.validate_after_ms = o.validate_after_ms
  popts.max_result_bytes = o.max_result_bytes
  return F.check(C.weir_ffi_pg_pool_set(name, ck, cv, #keys, popts, F.errbuf, F.errlen))
end

-- One connection for one call (or a stream, or a transaction). Goes
-- through the connection's breaker: an open breaker fails fast.
local function acquire(cfg)
  breaker.allow(cfg)
  pool_of(cfg)
  local c, rc, msg = native.pg_acquire(cfg.name)
  if not c then
    -- pool exhausted: not the server's fault
    if rc == C.WEIR_ELIMIT then fail(cfg, msg, true, "limit") end
    breaker.record(cfg, false)
    fail(cfg, "[08001] " .. msg, true, "io")
  end
  return c
end

-- Give c back after an error or success; records the outcome with the
-- breaker (only connection trouble counts as the server failing).
-- An error raised by user code on the way (a map over the rows being
-- loaded) arrives wrapped as { user_error = e } and is raised unchanged.
local function release(cfg, c, err)
  if err == nil then
    pg_release(c, true)
    breaker.record(cfg, true)
    return
  end
  local user = type(err) == "table" and err.user_error ~= nil
  -- after a user error the connection may be reused: pg.c keeps it only
  -- when it is idle (rolled back, no COPY or statement in progress)
  pg_release(c, user)
  if user then
    breaker.record(cfg, true)
    error(err.user_error, 0)
  end
  local t
  if errors.is(err) then t = err.transient else t = transient(err) end
  breaker.record(cfg, not t)
  fail(cfg, err, t)
end

local run = pg_run

-- Call fn(c) with a connection of its own; returns its results.
local function with_conn(cfg, fn, ...)
  local c = acquire(cfg)
  local res = { pcall(fn, c, ...) }
  if not res[1] then release(cfg, c, res[2]) end
  release(cfg, c, nil)
  return select(2, unpack(res))
end

local function nparams(params)
  if params == nil then return 0 end
  if type(params) ~= "table" then error("bad 'params' (array expected)", 0) end
  local n = params.n or 0
  for k in pairs(params) do
    if type(k) == "number" and k > n then n = k end
  end
  return n
end

-- trusted handles -------------------------------------------------------

local Handle = {}
Handle.__index = Handle

--- A handle on connection cfg (a normalized weir.yaml connection; hostaddr
-- set by the supervisor). Cheap: the pool is per process and name.
function M.connect(cfg)
  return setmetatable({ cfg = cfg }, Handle)
end

--- Run one statement with bound parameters; returns affected, rows, names.
function Handle:exec(sql, params)
  local np = nparams(params)
  return with_conn(self.cfg, function(c) return pg_exec(c, sql, params, np) end)
end

--- All rows of a small query (bounded by max_result), and the names.
function Handle:all(sql, params)
  local _, rows, names = self:exec(sql, params)
  return rows or {}, names or {}
end

--- Run statements of the simple protocol (no parameters) in order.
function Handle:run(sql)
  return with_conn(self.cfg, function(c) run(c, sql) end)
end

--- fn(tx) inside BEGIN/COMMIT on one connection; ROLLBACK if fn raises.
-- tx has exec(sql, params), all(sql, params), run(sql), conn.
-- trusted: fn is the library's own (a load), so every error it raises is
-- the connection's; otherwise fn is user code, whose errors (other than
-- the database's "[SQLSTATE] ..." ones) pass through with their retries.
function Handle:transaction(fn, trusted)
  local tx = self:begin()
  local res = { pcall(fn, tx) }
  if res[1] then
    tx.commit()
    return select(2, unpack(res))
  end
  local e = res[2]
  -- a statement of tx failed: it ended the transaction and said why
  if tx.over() then error(e, 0) end
  if not trusted and not (type(e) == "table" and e.user_error ~= nil)
     and not (type(e) == "string" and e:match("^%[%w%w%w%w%w%]")) then
    e = { user_error = e }
  end
  tx.fail(e)
end

--- An explicit transaction: BEGIN on a connection of its own. Returns tx
-- with exec, all, run, commit() and rollback(); the connection goes back
-- to the pool when either ends it (a connection left in a transaction is
-- closed instead, so the server rolls it back).
function Handle:begin()
  local cfg = self.cfg
  local c = acquire(cfg)
  local ok, err = pcall(run, c, "BEGIN")
  if not ok then release(cfg, c, err) end
  local done = false
  local tx = { conn = c }
  local function guard(fn, ...)
    if done then error("the transaction is already over", 0) end
    local res = { pcall(fn, ...) }
    if not res[1] then
      done = true
      release(cfg, c, res[2])
    end
    return select(2, unpack(res))
  end
  function tx.exec(_, sql, params)
    return guard(function() return pg_exec(c, sql, params, nparams(params)) end)
  end
  function tx.all(_, sql, params)
    return guard(function()
      local _, rows, names = pg_exec(c, sql, params, nparams(params))
      return rows or {}, names or {}
    end)
  end
  function tx.run(_, sql) return guard(run, c, sql) end
  local function finish(sql)
    guard(run, c, sql)
    done = true
    release(cfg, c, nil)
  end
  function tx.commit() finish("COMMIT") end
  function tx.rollback() finish("ROLLBACK") end
  function tx.over() return done end
  --- Roll back and give the connection up because of why (raised: see
  -- release).
  function tx.fail(why)
    done = true
    pcall(run, c, "ROLLBACK")
    release(cfg, c, why)
  end
  --- For cleanup: give the connection up, ending the transaction.
  function tx.abandon()
    if not done then done = true; pg_release(c, false) end
  end
  return tx
end

--- Round-trip latency in ms ("SELECT 1"), for `weir health`.
function Handle:ping()
  local t0 = C.weir_ffi_now_mono_ms()
  self:exec("SELECT 1")
  return C.weir_ffi_now_mono_ms() - t0
end

--- Introspection: schemas, tables of a schema, columns, primary key.
function Handle:schemas()
  local rows = self:all("SELECT nspname AS name FROM pg_namespace WHERE nspname !~ '^pg_' "
                        .. "AND nspname <> 'information_schema' ORDER BY 1")
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.name end
  return out
end

function Handle:tables(schema)
  local rows = self:all("SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n "
                        .. "ON n.oid = c.relnamespace WHERE n.nspname = coalesce($1, current_schema()) "
                        .. "AND c.relkind IN ('r', 'p') ORDER BY 1", { schema or NULL, n = 1 })
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.name end
  return out
end

local COLUMNS_SQL = [[SELECT a.attname AS name, a.atttypid::int8 AS oid,
  format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable
  FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0
  AND NOT a.attisdropped ORDER BY a.attnum]]
local PK_SQL = [[SELECT a.attname AS name FROM pg_index i
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
  WHERE i.indrelid = to_regclass($1) AND i.indisprimary
  ORDER BY array_position(i.indkey::int2[], a.attnum)]]

local function columns_of(exec, tbl)
  local _, rows = exec(COLUMNS_SQL, { qualified(tbl) })
  return rows or {}
end
local function pk_of(exec, tbl)
  local _, rows = exec(PK_SQL, { qualified(tbl) })
  local out = {}
  for i, r in ipairs(rows or {}) do out[i] = r.name end
  return out
end

function Handle:columns(tbl)
  return columns_of(function(s, p) return self:exec(s, p) end, tbl)
end
function Handle:primary_key(tbl)
  return pk_of(function(s, p) return self:exec(s, p) end, tbl)
end

-- streams ---------------------------------------------------------------

local QUERY_WORDS = { select = true, with = true, values = true, table = true }

--- A pull function over the rows of sql, in batches, constant memory. A
-- query (SELECT, WITH, VALUES, TABLE) is read with COPY (sql) TO STDOUT
-- when it has no parameters, else with a cursor fetched BATCH rows at a
-- time inside a transaction; any other statement that returns rows (DML
-- with RETURNING, SHOW...) in libpq's single-row mode. opts.mode = "copy",
-- "cursor" or "rows" chooses. Returns pull, names, oids, close, mods and
-- preview; on_rows(n) counts rows. lazy: the statement is described now
-- but runs at the first pull, and preview(n) before it makes a query run
-- as SELECT * FROM (sql) LIMIT n (weir repl: the limit reaches the
-- server); it returns false when too late or not a query.
function Handle:pull(sql, params, on_rows, opts, lazy)
  local cfg = self.cfg
  opts = opts or {}
  local batch = opts.batch or BATCH
  if type(batch) ~= "number" or batch ~= math.floor(batch) or batch < 1 or batch > 1000000 then
    error(format("bad 'batch' %s (an integer 1..1000000)", tostring(opts.batch)), 0)
  end
  local body = tostring(sql):gsub("[%s;]+$", "")
  -- checked before a connection is taken: an error here must not hold one
  local mode = opts.mode
  if not mode then
    local word = (body:match("^%s*(%a+)") or ""):lower()
    if not QUERY_WORDS[word] then mode = "rows"
    elseif nparams(params) == 0 then mode = "copy"
    else mode = "cursor" end
  end
  if mode ~= "copy" and mode ~= "cursor" and mode ~= "rows" then
    error(format("bad query mode %q (copy, cursor or rows)", tostring(mode)), 0)
  end
  if mode == "copy" and nparams(params) > 0 then
    error("COPY cannot bind parameters: use mode \"cursor\" or \"rows\"", 0)
  end
  local c = acquire(cfg)
  local done = false
  local names, oids, mods, fetch, _
  local function finish(err)
    if done then return end
    done = true
    if err then release(cfg, c, err) else release(cfg, c, nil) end
  end
  local rows_mode = mode == "rows"
  local limit
  local function start()
    local run_body = body
    if limit then
      run_body = "SELECT * FROM (" .. body .. ") AS weir_preview LIMIT " .. format("%d", limit)
    end
    if rows_mode then
      native.pg_rows_begin(c, body, params, nparams(params))
    elseif mode == "copy" then
      -- binary when every column has a binary form: neither side prints
      -- or parses numbers and timestamps as text
      local binary = opts.binary ~= false and native.pg_binary_ok(oids)
      native.pg_copy_out_begin(c, "COPY (" .. run_body .. ") TO STDOUT"
                                     .. (binary and " (FORMAT binary)" or ""))
    else
      -- the connection is this stream's own: one cursor name will do
      run(c, "BEGIN")
      pg_exec(c, "DECLARE weir_cursor NO SCROLL CURSOR FOR " .. run_body, params,
                     nparams(params))
      fetch = "FETCH FORWARD " .. batch .. " FROM weir_cursor"
    end
  end
  local ok, err = pcall(function()
    names, oids, _, mods = native.pg_describe(c, body)
    if not lazy then start() end
  end)
  if not ok then finish(err) end
  local started = not lazy
  local function begin()
    started = true
    local okb, e = pcall(start)
    if not okb then finish(e) end
  end
  local pull
  if rows_mode then
    pull = function()
      if done then return nil end
      if not started then begin() end
      local okb, rows = pcall(native.pg_rows_batch, c, batch, names)
      if not okb then finish(rows) end
      if rows == nil then finish(nil); return nil end
      if on_rows then on_rows(#rows) end
      return rows
    end
  elseif mode == "cursor" then
    pull = function()
      if done then return nil end
      if not started then begin() end
      local okf, rows = pcall(function()
        local _, r = pg_exec(c, fetch, nil, 0)
        return r
      end)
      if not okf then finish(rows) end
      if not rows or #rows == 0 then
        local okc, e = pcall(run, c, "COMMIT")
        finish(not okc and e or nil)
        return nil
      end
      if on_rows then on_rows(#rows) end
      return rows
    end
  else
    pull = function()
      if done then return nil end
      if not started then begin() end
      local okb, rows = pcall(native.pg_copy_out_batch, c, batch, names, oids)
      if not okb then finish(rows) end
      if rows == nil then finish(nil); return nil end
      if on_rows then on_rows(#rows) end
      return rows
    end
  end
  local function preview(n)
    if started or rows_mode then return false end
    -- a WITH that changes data must stay at the top level
    local low = body:lower()
    if low:match("^%s*with%f[^%w]") then
      for _, w in ipairs({ "insert", "update", "delete", "merge" }) do
        if low:find("%f[%w_]" .. w .. "%f[^%w_]") then return false end
      end
    end
    limit = n
    return true
  end
  return pull, names, oids, function() if not done then done = true; pg_release(c, false) end end,
         mods, preview
end

-- loading ----------------------------------------------------------------

-- The ledger tables, in schema s (quoted): beside the target table.
local function ledger_sql(s)
  return "CREATE TABLE IF NOT EXISTS " .. s .. [[._weir_loads (
  run_id text NOT NULL, task text NOT NULL, seq integer NOT NULL, target text NOT NULL,
  mode text NOT NULL, rows bigint NOT NULL, attempt integer NOT NULL,
  loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run_id, task, seq));
CREATE TABLE IF NOT EXISTS ]] .. s .. [[._weir_fence (
  run_id text NOT NULL, task text NOT NULL, attempt integer NOT NULL,
  PRIMARY KEY (run_id, task))]]
end

-- A builtin type's SQL name for CREATE TABLE from a PostgreSQL source
-- (user types have other OIDs on another server: they become text).
local function infer_type(v)
  local t = type(v)
  if t == "number" then
    return (v == math.floor(v) and v > -2^53 and v < 2^53) and "bigint" or "double precision"
  end
  if t == "boolean" then return "boolean" end
  if t == "table" or require("weir.json").text_of(v) then return "jsonb" end
  return "text"
end

local stage_n = 0

-- A one-character SQL string literal (ctx.csv checked it is one byte).
local function char_literal(c)
  if #c ~= 1 or c == "\0" then error("bad CSV delimiter or quote", 0) end
  return "'" .. (c == "'" and "''" or c) .. "'"
end

local TEXTLIKE = { [25] = true, [1043] = true, [1042] = true, [19] = true }

-- A CSV file straight into COPY (FORMAT csv): the server parses it, as
-- for psql's \copy. Empty unquoted fields of text columns stay empty
-- strings (FORCE_NOT_NULL), as the row path loads them; in other columns
-- they are NULL. Returns the rows loaded.
local function copy_raw_csv(conn, dest, collist, cols, tcols, raw)
  local is_text = {}
  for _, c in ipairs(tcols) do is_text[c.name] = TEXTLIKE[tonumber(c.oid)] end
  local fnn = {}
  for _, c in ipairs(cols) do if is_text[c] then fnn[#fnn + 1] = quote(c) end end
  local sql = "COPY " .. dest .. " (" .. collist .. ") FROM STDIN (FORMAT csv, HEADER true, "
              .. "DELIMITER " .. char_literal(raw.delimiter) .. ", QUOTE "
              .. char_literal(raw.quote ~= "" and raw.quote or "\"")
              .. (#fnn > 0 and (", FORCE_NOT_NULL (" .. concat(fnn, ", ") .. ")") or "") .. ")"
  local fd = raw.open()
  local ok, res = pcall(function()
    native.pg_copy_in_begin(conn, sql)
    local sent, rerr = native.pg_copy_in_file(conn, fd)
    if not sent then error({ user_error = raw.name .. ": " .. rerr }, 0) end
    return native.pg_copy_in_end(conn, nil)
  end)
  C.weir_ffi_file_close(fd)
  if not ok then
    pcall(native.pg_copy_in_end, conn, "aborted")
    error(res, 0)
  end
  return res
end

--- Load batches from pull (first batch given) into tbl on connection cfg.
-- opts: mode (append | replace | upsert | replace_partition), key,
-- partition, create (default true). fence: { run_id, task, attempt, seq }.
-- Returns { rows, table, mode, skipped }.
function Handle:load(pull, first, cols, src_oids, tbl, opts, fence, raw)
  local cfg = self.cfg
  opts = opts or {}
  local mode = opts.mode or "append"
  local target = qualified(tbl)
  local keys = opts.key
  if type(keys) == "string" then keys = { keys } end
  local parts = opts.partition
  if type(parts) == "string" then parts = { parts } end
  if mode == "replace_partition" and (type(parts) ~= "table" or #parts == 0) then
    error("mode \"replace_partition\" needs opts.partition (column or columns)", 0)
  end
  -- the ledger tables, in their own transaction (two creators may race),
  -- pinned to the target's schema: where the target table is, or where
  -- it will be created (a qualified name's schema, else the first of
  -- search_path that exists), so they never move away from what they guard
  local lschema
  with_conn(cfg, function(c)
    local _, rows = pg_exec(c, "SELECT coalesce((SELECT n.nspname FROM pg_class r JOIN "
                            .. "pg_namespace n ON n.oid = r.relnamespace WHERE r.oid = "
                            .. "to_regclass($1)), $2, current_schema()) AS s",
                            { target, (split_name(tbl)) }, 2)
    lschema = rows and rows[1] and rows[1].s
    if lschema == nil or lschema == NULL then
      error(format("no schema to create %s in: none of the connection's search_path "
                   .. "exists", target), 0)
    end
    local ok, e = pcall(run, c, ledger_sql(quote(lschema)))
    if not ok and not tostring(e):match("^%[(23505)%]") and not tostring(e):match("^%[(42P07)%]") then
      error(e, 0)
    end
  end)
  local LOADS, FENCE = quote(lschema) .. "._weir_loads", quote(lschema) .. "._weir_fence"
  -- rows come from user code (a map, a filter): its errors pass through
  local upstream = pull
  pull = function()
    local ok, b = pcall(upstream)
    if not ok then error({ user_error = b }, 0) end
    return b
  end
  local result
  self:transaction(function(tx)
    local function exec(sql, params) return pg_exec(tx.conn, sql, params, nparams(params)) end
    if fence then
      -- the fence: a newer attempt of this task takes the row (and its
      -- lock); an older one can then no longer commit
      local _, won = exec("INSERT INTO " .. FENCE .. " AS f (run_id, task, attempt) "
                          .. "VALUES ($1, $2, $3) ON CONFLICT (run_id, task) DO UPDATE "
                          .. "SET attempt = excluded.attempt "
                          .. "WHERE f.attempt <= excluded.attempt RETURNING attempt",
                          { fence.run_id, fence.task, fence.attempt })
      if not won or #won == 0 then
        error(format("[WEIR1] attempt %d of task %s is stale: a newer attempt started",
                     fence.attempt, fence.task), 0)
      end
      local _, done = exec("SELECT rows, target, mode FROM " .. LOADS .. " "
                           .. "WHERE run_id = $1 AND task = $2 AND seq = $3",
                           { fence.run_id, fence.task, fence.seq })
      if done and done[1] and (done[1].target ~= target or done[1].mode ~= mode) then
        -- the task's loads come in another order than in the attempt that
        -- committed this one: skipping or loading could both be wrong
        error(format("[WEIR2] load %d of task %s went to %s (%s) in an earlier attempt, "
                     .. "not to %s (%s): a task must make its loads in the same order "
                     .. "in every attempt", fence.seq, fence.task, done[1].target,
                     done[1].mode, target, mode), 0)
      end
      if done and done[1] then
        while pull() do end
        result = { rows = tonumber(done[1].rows), table = tbl, mode = mode, skipped = true }
        return
      end
    end
    local tcols = columns_of(exec, tbl)
    if #tcols == 0 then
      if opts.create == false then error(format("table %s does not exist", target), 0) end
      if not first then
        result = { rows = 0, table = tbl, mode = mode, skipped = false }
        return
      end
      local defs = {}
      for i, c in ipairs(cols) do
        local ty
        local oid = src_oids and src_oids[i]
        if oid and oid < 10000 then
          -- with the source column's type modifier: char(5) stays char(5)
          local mod = src_oids.mods and src_oids.mods[i]
          local _, r = exec("SELECT format_type($1::oid, $2::integer) AS t",
                            { oid, (mod and mod >= 0) and mod or NULL })
          ty = r and r[1] and r[1].t
        end
        if not ty then
          local sample
          for r = 1, #first do
            local v = first[r][c]
            if v ~= nil and v ~= NULL then sample = v; break end
          end
          ty = infer_type(sample)
        end
        defs[i] = quote(c) .. " " .. ty
      end
      if keys then
        local kq = {}
        for i, k in ipairs(keys) do kq[i] = quote(k) end
        defs[#defs + 1] = "PRIMARY KEY (" .. concat(kq, ", ") .. ")"
      end
      run(tx.conn, "CREATE TABLE " .. target .. " (" .. concat(defs, ", ") .. ")")
      tcols = columns_of(exec, tbl)
    end
    local oid_of = {}
    for _, c in ipairs(tcols) do oid_of[c.name] = tonumber(c.oid) end
    local oids, cq = {}, {}
    for i, c in ipairs(cols) do
      if not oid_of[c] then error(format("column %q is not in table %s", c, target), 0) end
      oids[i] = oid_of[c]
      cq[i] = quote(c)
    end
    local collist = concat(cq, ", ")
    if mode == "upsert" and not keys then
      keys = pk_of(exec, tbl)
      if #keys == 0 then
        error(format("mode \"upsert\" needs opts.key: table %s has no primary key", target), 0)
      end
    end
    local dest = target
    if mode == "replace" then
      run(tx.conn, "TRUNCATE " .. target)
    elseif mode == "upsert" or mode == "replace_partition" then
      stage_n = stage_n + 1
      dest = quote("weir_stage_" .. stage_n)
      run(tx.conn, "CREATE TEMP TABLE " .. dest .. " (LIKE " .. target .. " INCLUDING DEFAULTS) "
                   .. "ON COMMIT DROP; ALTER TABLE " .. dest .. " ADD COLUMN \"_weir_ord\" bigserial")
    elseif mode ~= "append" then
      error(format("bad mode %q (append, replace, upsert or replace_partition)", tostring(mode)), 0)
    end
    local n = 0
    if first and raw then
      n = copy_raw_csv(tx.conn, dest, collist, cols, tcols, raw)
    elseif first then
      local copy = "COPY " .. dest .. " (" .. collist .. ") FROM STDIN"
      if opts.binary ~= false and native.pg_binary_ok(oids) then
        -- a value only the text form takes switches the rest to text
        native.pg_copy_in_begin(tx.conn, copy .. " (FORMAT binary)", copy)
      else
        native.pg_copy_in_begin(tx.conn, copy)
      end
      local b = first
      local ok, e = pcall(function()
        while b do
          native.pg_copy_in_batch(tx.conn, b, cols, oids, 1, #b)
          n = n + #b
          b = pull()
        end
      end)
      if not ok then
        pcall(native.pg_copy_in_end, tx.conn, "aborted: " .. tostring(e))
        error(e, 0)
      end
      native.pg_copy_in_end(tx.conn, nil)
    end
    if mode == "upsert" then
      local kq, kset, sets = {}, {}, {}
      for i, k in ipairs(keys) do kq[i] = quote(k); kset[k] = true end
      -- a NULL key matches nothing (ON CONFLICT) yet DISTINCT ON folds
      -- NULLs together: such rows would be kept one a load and added again
      -- by the next. One rule: refused.
      local nulls = {}
      for i, k in ipairs(kq) do nulls[i] = k .. " IS NULL" end
      local _, bad = exec("SELECT count(*) AS n FROM " .. dest .. " WHERE "
                          .. concat(nulls, " OR "))
      if bad and bad[1] and tonumber(bad[1].n) > 0 then
        local e = errors.new("data", format("upsert into %s: %d row(s) have a NULL key (%s); "
                                            .. "a NULL key matches no row, so every load would "
                                            .. "add them again: give every row its key, or "
                                            .. "load with mode append", target,
                                            tonumber(bad[1].n), concat(keys, ", ")))
        e.transient = false
        error({ user_error = e }, 0)
      end
      for _, c in ipairs(cols) do
        if not kset[c] then sets[#sets + 1] = quote(c) .. " = excluded." .. quote(c) end
      end
      local klist = concat(kq, ", ")
      -- the last row of a key in the stream wins
      run(tx.conn, "INSERT INTO " .. target .. " (" .. collist .. ") SELECT DISTINCT ON (" .. klist
                   .. ") " .. collist .. " FROM " .. dest .. " ORDER BY " .. klist
                   .. ", \"_weir_ord\" DESC ON CONFLICT (" .. klist .. ") DO "
                   .. (#sets > 0 and ("UPDATE SET " .. concat(sets, ", ")) or "NOTHING"))
    elseif mode == "replace_partition" then
      local conds = {}
      for i, c in ipairs(parts) do
        conds[i] = "s." .. quote(c) .. " IS NOT DISTINCT FROM t." .. quote(c)
      end
      run(tx.conn, "DELETE FROM " .. target .. " t WHERE EXISTS (SELECT 1 FROM " .. dest
                   .. " s WHERE " .. concat(conds, " AND ") .. "); INSERT INTO " .. target
                   .. " (" .. collist .. ") SELECT " .. collist .. " FROM " .. dest
                   .. " ORDER BY \"_weir_ord\"")
    end
    if fence then
      exec("INSERT INTO " .. LOADS .. " (run_id, task, seq, target, mode, rows, attempt) "
           .. "VALUES ($1, $2, $3, $4, $5, $6, $7)",
           { fence.run_id, fence.task, fence.seq, target, mode, n, fence.attempt })
    end
    result = { rows = n, table = tbl, mode = mode, skipped = false }
  end, true)
  return result
end

-- what tasks see -------------------------------------------------------
-- ctx.source(NAME) / ctx.sink(NAME) give an opaque object (weir.stream
-- keeps its state private); its methods check their receiver and blame
-- the caller's line on misuse.

local Db = {}

local function D(d, what) return stream.owned(d, "pg", what) end

-- lineage ------------------------------------------------------------------

-- A table's schema and name as the server resolves them (search_path),
-- and, with cols, its columns as JSON text ({ name, type } each).
local RESOLVE_SQL = [[SELECT n.nspname AS s, c.relname AS r FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)]]
local RESOLVE_COLS_SQL = [[SELECT n.nspname AS s, c.relname AS r,
  (SELECT json_agg(json_build_object('name', a.attname,
     'type', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
   AND NOT a.attisdropped)::text AS cols
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = to_regclass($1)]]

-- The dataset name of table t ({ schema, name } or "schema.table") on
-- handle h, resolved by the server; the columns too when cols. A table
-- the server does not know keeps the name as written (schema public), as
-- does every table of an attempt (A) once a lookup failed: a server that
-- cannot be reached costs one more try, not one per query.
local function dataset_of(h, t, cols, A)
  local ok, rows = false, nil
  -- a name read from SQL text may be no identifier PostgreSQL takes (too
  -- long): it is kept as written, and is no error of the task's
  local okq, q = pcall(qualified, t)
  if okq and not A.pg_unresolved then
    ok, rows = pcall(h.all, h, cols and RESOLVE_COLS_SQL or RESOLVE_SQL, { q })
    if not ok then A.pg_unresolved = true end
  end
  local r = ok and rows[1]
  if r then
    local columns
    if cols and type(r.cols) == "string" then
      -- plain tables: the columns travel in the attempt's result
      local okj, list = pcall(require("weir.json").decode, r.cols)
      if okj and type(list) == "table" then
        columns = {}
        for i, c in ipairs(list) do columns[i] = { name = c.name, type = c.type } end
      end
    end
    return lineage.postgres(h.cfg, r.s, r.r), columns
  end
  local schema, name = split_name(t)
  return lineage.postgres(h.cfg, schema, name)
end

-- The lineage entries a query reads: the tables it names, else the
-- database (docs/adr/0030). The names of a statement are found once per
-- attempt and connection (a task may run one query many times).
local function reads_of(p, sql)
  local A = p.A
  local seen = A.pg_reads or {}
  A.pg_reads = seen
  local key = tostring(p.h.cfg.name) .. "\0" .. sql
  local names = seen[key]
  if not names then
    names = {}
    for i, t in ipairs(lineage.sql_tables(sql)) do names[i] = (dataset_of(p.h, t, false, A)) end
    if #names == 0 then names[1] = lineage.postgres(p.h.cfg) end
    seen[key] = names
  end
  local out = {}
  for i, n in ipairs(names) do out[i] = A.dataset(n, "input") end
  return out
end

local function check_sql(sql, what)
  if type(sql) ~= "string" or sql == "" then
    error("weir.postgres." .. what .. ": bad 'sql' (string expected)", 3)
  end
end

--- db:query(sql, params, opts): a stream of the rows (constant memory).
-- opts.batch: rows per batch (1000); opts.mode: "copy", "cursor" or
-- "rows" (single-row mode), chosen from the statement when absent;
-- opts.binary = false: text COPY.
function Db.query(d, sql, params, opts)
  local p = D(d, "query")
  check_sql(sql, "query")
  local A = p.A
  local reads = reads_of(p, sql)
  local function counted(n)
    A.stats.rows_in = A.stats.rows_in + n
    for i = 1, #reads do reads[i].rows = reads[i].rows + n end
  end
  -- in a weir repl session the query runs at the first pull, so that a
  -- preview can limit it on the server (ADR 47)
  local lazy = A.job.kind == "session"
  local pull, names, oids, close, mods, preview = p.h:pull(sql, params, counted, opts, lazy)
  p.opened[#p.opened + 1] = close
  local shared = { pg_oids = oids, pg_typmods = mods }
  if lazy then
    -- for weir repl: close (drop the query), preview (limit it before it
    -- runs) and again (a pull over the whole result, a new query)
    shared.close, shared.preview, shared.source = close, preview, pull
    function shared.again()
      local pl, _, _, cl = p.h:pull(sql, params, counted, opts)
      p.opened[#p.opened + 1] = cl
      return pl, cl
    end
  end
  return stream.new_stream(pull, names, shared)
end

--- db:exec(sql, params): run one statement; returns the affected rows.
function Db.exec(d, sql, params)
  local p = D(d, "exec")
  check_sql(sql, "exec")
  if p.tx then return (p.tx:exec(sql, params)) end
  return (p.h:exec(sql, params))
end

--- db:rows(sql, params): the rows of a small query as an array (bounded
-- by max_result).
function Db.rows(d, sql, params)
  local p = D(d, "rows")
  check_sql(sql, "rows")
  local reads = reads_of(p, sql)
  local rows
  if p.tx then rows = p.tx:all(sql, params) else rows = p.h:all(sql, params) end
  for i = 1, #reads do reads[i].rows = reads[i].rows + #rows end
  return rows
end

--- db:transaction(fn): fn(tx) runs inside BEGIN ... COMMIT on one
-- connection, and ROLLBACK when it raises (the error goes on). tx has
-- exec and rows. Returns what fn returns.
function Db.transaction(d, fn)
  local p = D(d, "transaction")
  if type(fn) ~= "function" then error("weir.postgres.transaction: bad 'fn' (function expected)", 2) end
  return p.h:transaction(function(tx)
    local t = stream.new_object("pg", Db, { h = p.h, tx = tx, A = p.A, opened = p.opened })
    return fn(t)
  end)
end

--- db:begin(): an explicit transaction on a connection of its own; tx
-- has exec, rows, commit and rollback. One left open when the attempt
-- ends is rolled back.
function Db.begin(d)
  local p = D(d, "begin")
  local tx = p.h:begin()
  p.opened[#p.opened + 1] = tx.abandon
  return stream.new_object("pg", Db, { h = p.h, tx = tx, A = p.A, opened = p.opened,
                                        explicit = true })
end

--- tx:commit() / tx:rollback() on an object from db:begin().
function Db.commit(d)
  local p = D(d, "commit")
  if not p.explicit then error("weir.postgres.commit: not a transaction from db:begin()", 2) end
  p.tx.commit()
end
function Db.rollback(d)
  local p = D(d, "rollback")
  if not p.explicit then error("weir.postgres.rollback: not a transaction from db:begin()", 2) end
  p.tx.rollback()
end

--- Introspection: db:schemas(), db:tables(schema), db:columns(table)
-- ({ name, type, nullable }), db:primary_key(table).
function Db.schemas(d) return D(d, "schemas").h:schemas() end
function Db.tables(d, schema) return D(d, "tables").h:tables(schema) end
function Db.columns(d, tbl)
  local out = {}
  for i, c in ipairs(D(d, "columns").h:columns(tbl)) do
    out[i] = { name = c.name, type = c.type, nullable = c.nullable }
  end
  return out
end
function Db.primary_key(d, tbl) return D(d, "primary_key").h:primary_key(tbl) end

--- The object a task gets for connection cfg. A: the attempt's record
-- (job, stats, next_seq); opened: closers run when the attempt ends.
function M.for_task(cfg, A, opened)
  return stream.new_object("pg", Db, { h = M.connect(cfg), A = A, opened = opened, cfg = cfg })
end

--- A table of connection state p (a task's connection object) to check
-- (weir.checks): every check is a query the server runs.
function M.dataset(p, tbl)
  local h = p.h
  local T = { dialect = "pg", q = quote, tbl = qualified(tbl), qualified = qualified }
  function T.all(sql, params) return (h:all(sql, params)) end
  local obj = stream.new_object("pg", Db, p)
  return { kind = "postgres", name = "postgres:" .. p.cfg.name .. "#" .. tostring(tbl),
           table = tbl, T = T, obj = obj,
           stream = function() return Db.query(obj, "SELECT * FROM " .. qualified(tbl)) end }
end

-- s:into(db, table, opts) with a PostgreSQL target (weir.stream calls it).
local function sink(sp, dp, tbl, opts)
  if dp.tx then error("weir.stream.into: load into the connection, not a transaction", 3) end
  local A = dp.A
  opts = opts or {}
  -- the load's number first: a pull that raises (and is caught) must not
  -- shift the numbers of the loads after it
  local seq = A.next_seq()
  local first = sp.pull()
  local cols = first and stream.sink_columns(sp, first) or sp.columns or {}
  local src_oids
  if sp.shared and sp.shared.pg_oids and sp.columns then
    local by, mod_of = {}, {}
    local mods = sp.shared.pg_typmods or {}
    for i, c in ipairs(sp.columns) do by[c] = sp.shared.pg_oids[i]; mod_of[c] = mods[i] end
    src_oids = { mods = {} }
    for i, c in ipairs(cols) do src_oids[i] = by[c]; src_oids.mods[i] = mod_of[c] end
  end
  local job = A.job
  -- a CSV stream nothing was applied to is loaded as the file itself,
  -- unless COPY would end it early (a line \.): then row by row
  local raw = sp.raw_csv
  if raw and not raw.copy_safe() then raw = nil end
  if raw then cols = raw.header end
  local res = dp.h:load(sp.pull, first, cols, src_oids, tbl, opts, {
    run_id = job.run_id or "", task = job.task or "", attempt = job.attempt or 0,
    seq = seq }, raw)
  if raw and not res.skipped then
    -- the rows the server read (the first batch was parsed here only to
    -- type a new table)
    A.stats.rows_in = A.stats.rows_in - (first and #first or 0) + res.rows
  end
  A.stats.rows_out = A.stats.rows_out + res.rows
  if raw and raw.dataset and not res.skipped then
    raw.dataset.rows = raw.dataset.rows - (first and #first or 0) + res.rows
  end
  -- lineage: the table as the server names it, with its columns now (a
  -- skipped load stands for the earlier attempt's, so it counts its rows)
  A.pg_unresolved = nil -- the load reached the server
  local name, columns = dataset_of(dp.h, tbl, true, A)
  local d = A.dataset(name, "output")
  d.rows = d.rows + res.rows
  d.columns = columns or d.columns
  A.written[#A.written + 1] = { connection = dp.cfg.name, table = tbl, state = dp,
                                shown = "postgres:" .. dp.cfg.name .. "#" .. tostring(tbl) }
  return res
end

M.sink = sink
stream.sinks.pg = sink

--- Close every pool of this process.
function M.close_all()
  C.weir_ffi_pg_pools_close()
  pools = {}
end

--- What workers load before their lock-down when a postgres connection
-- exists (libpq: connectors/pq.h).
M.preload = tonumber(C.WEIR_PRELOAD_LIBPQ)

--- One round trip for weir health; raises on failure.
function M.ping(cfg) M.connect(cfg):ping() end

-- ---- weir.yaml -------------------------------------------------------------

--- Defaults of a normalized connection (durations in ms, sizes in bytes).
M.DEFAULTS = {
  host = "localhost", port = 5432, sslmode = "prefer", connect_timeout_ms = 10000,
  statement_timeout_ms = 0, max_result_bytes = 64 * 1024 * 1024, application_name = "weir",
}

-- libpq keywords that have their own connection field.
local RESERVED_OPTIONS = {
  host = "host", hostaddr = "host", port = "port", dbname = "database", user = "user",
  password = "password", sslmode = "sslmode", connect_timeout = "connect_timeout",
  application_name = "application_name",
}

-- libpq options that name files. Tasks' connections are made in workers,
-- which cannot open files (seccomp; docs/security.md): the TLS ones are
-- set in tls (the supervisor reads them), the others are refused here
-- with a clear reason rather than failing in every task.
local TLS_OPTIONS = { sslrootcert = "ca", sslcert = "cert", sslkey = "key", sslcrl = "crl" }
local FILE_OPTIONS = { sslcrldir = true, passfile = true, service = true, servicefile = true }
local TLS_FILES = { ca = true, cert = true, key = true, crl = true }


--- weir.yaml's entry of a postgres connection, checked (errors through
-- f.st.add(path, message)) and normalized: host, port, user, database,
-- password, sslmode, timeouts in ms, sizes in bytes, pool, breaker,
-- libpq options. f: weir.config's field readers.
function M.normalize(name, c, base, f)
  local st, add = f.st, f.st.add
  local d = M.DEFAULTS
  local u = f.url_of(c, base, st, { postgres = true, postgresql = true }, "postgres:// or postgresql://")
  -- the URL's path is the database, its query a few libpq keywords
  if u.path then
    local db = u.path:match("^/(.*)$")
    if db and not find(db, "/", 1, true) then
      u.database = db ~= "" and db or nil
    else
      f.url_error(st, base .. ".url", u, "the URL's path must be /DATABASE")
    end
  end
  local tls_paths = {}
  for _, kv in ipairs(u.query or {}) do
    local k, v = kv[1], kv[2]
    if k == "sslmode" or k == "application_name" then
      u[k] = v
    elseif TLS_OPTIONS[k] then
      tls_paths[TLS_OPTIONS[k]] = v
    elseif k == "connect_timeout" then
      -- libpq counts this one in seconds
      u.connect_timeout = v
    else
      f.url_error(st, base .. ".url", u, format("unsupported URL parameter %s (supported: sslmode,"
                                              .. " sslrootcert, sslcert, sslkey, sslcrl,"
                                              .. " connect_timeout, application_name)", util.show(k)))
    end
  end
  f.keep_url_password(u, st)
  local conn = { name = name, type = "postgres" }
  conn.host = f.str_field(c, u, "host", base, st) or d.host
  local port, pport = f.pick(c, u, "port", base)
  conn.port = port ~= nil and f.int_in(port, 1, 65535, pport, add) or d.port
  conn.user = f.str_field(c, u, "user", base, st)
  conn.database = f.str_field(c, u, "database", base, st) or conn.user
  conn.password = f.password_of(c, u, base, st)
  if not conn.user and c.user == nil and not u.bad then
    add(base, "user is required (in url or as a field)")
  end
  conn.tls = f.tls_of(c, base, st, TLS_FILES, tls_paths)
  local sslmode, spath = f.pick(c, u, "sslmode", base)
  -- with a CA, verify the server's certificate and name unless told otherwise
  conn.sslmode = conn.tls and conn.tls.ca and "verify-full" or d.sslmode
  if sslmode ~= nil then
    local ok = { disable = 1, allow = 1, prefer = 1, require = 1, ["verify-ca"] = 1,
                 ["verify-full"] = 1 }
    if not ok[sslmode] then
      add(spath, "expected one of disable, allow, prefer, require, verify-ca, verify-full, got "
                 .. util.show(sslmode))
    elseif sslmode:sub(1, 7) == "verify-" and not (conn.tls and conn.tls.ca) then
      add(spath, sslmode .. " needs the CA that signed the server's certificate: set tls.ca"
                 .. " (a PEM file, or system for OpenSSL's default bundle)")
    elseif sslmode == "disable" and conn.tls then
      add(spath, "disable contradicts tls (no TLS, so its files would go unused)")
    else
      conn.sslmode = sslmode
    end
  end
  local ct, cpath = f.pick(c, u, "connect_timeout", base)
  conn.connect_timeout_ms = ct ~= nil and f.ms_of(ct, cpath, add, 1) or d.connect_timeout_ms
  conn.statement_timeout_ms = c.statement_timeout ~= nil
    and f.ms_of(c.statement_timeout, base .. ".statement_timeout", add, 0) or d.statement_timeout_ms
  conn.max_result_bytes = c.max_result_size ~= nil
    and f.bytes_of(c.max_result_size, base .. ".max_result_size", add) or d.max_result_bytes
  conn.pool = f.pool_of(c.pool, base .. ".pool", add)
  conn.breaker = f.breaker_of(c.breaker, base .. ".breaker", add)
  conn.options = {}
  if type(c.options) == "table" then
    for k, v in pairs(c.options) do
      local p = f.child(base .. ".options", tostring(k))
      if RESERVED_OPTIONS[k] then
        add(p, format("set %s as a connection field, not in options", RESERVED_OPTIONS[k]))
      elseif TLS_OPTIONS[k] then
        add(p, format("set the %s file as tls.%s", k, TLS_OPTIONS[k]))
      elseif FILE_OPTIONS[k] then
        add(p, format("%s is not supported: it names a file, which task workers cannot open", k))
      elseif type(v) == "string" or type(v) == "number" or type(v) == "boolean" then
        conn.options[k] = tostring(v)
      end
    end
  end
  local app = f.pick(c, u, "application_name", base)
  conn.options.application_name = type(app) == "string" and app or d.application_name
  return conn
end

return M
