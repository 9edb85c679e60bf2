-- weir.redis: the Redis connector (trusted code; user code gets opaque
-- wrappers, never these handles).
--
-- A handle stands for the process-wide pool registered under a connection
-- name (connectors/redis.c): pools outlive the attempt's Lua state, so the
-- next attempt reuses warm connections. Commands and pipelines go through
-- weir._native.redis (classic Lua API: one crossing per command, replies
-- built as Lua tables in C). Pulls read in batches with cursors held here,
-- so memory stays constant; sinks pipeline one batch per round trip.
--
-- Operational failures return nil, err (err.code, err.message,
-- err.transient, err.redis = "WRONGTYPE"...); pulls raise instead, because
-- nil means the end of the stream (M.raise: the error object itself, whose
-- transient the attempt reads to decide on retries). Misuse raises.
local F = require("weir._ffi")
local ffi, C = F.ffi, F.C
local errors = require("weir.errors")
local json = require("weir.json")
local N = require("weir._native").redis
local type, error, select, setmetatable, tostring, pairs,
      ipairs, tonumber =
  type, error, select, setmetatable, tostring, pairs,
  ipairs, tonumber
local format, sort, floor = string.format, table.sort, math.floor

if N == nil then
  error("weir.redis: weir._native.redis is missing (libweir without the redis functions)")
end

local stream = require("weir.stream")
local lineage = require("weir.lineage")
local M = {}
stream.kind("redis", "weir.redis.", "a Redis connection", "r:")

-- A Redis nil reply is the lightuserdata NULL the C side pushes: ctx.NULL.
local NULL = require("weir._native").NULL

local errmt = errors.mt
local SHAPE_SCAN, SHAPE_HSCAN, SHAPE_XRANGE = 1, 2, 3
local INT32_MAX = 2147483647

--- True when v is an error value (an error reply inside a pipeline result).
function M.is_error(v)
  return errors.is(v)
end

--- Raise err the way the engine expects connector errors: an error
-- object whose transient says whether a retry can help (only errors the C
-- side found transient are).
function M.raise(err)
  if not errors.is(err) then err = errors.new("invalid", tostring(err)) end
  if err.transient == nil then err.transient = false end
  error(err, 0)
end

local priv = setmetatable({}, { __mode = "k" })
local R = {}
local R_mt = { __index = R, __metatable = false }

local function state(self, what)
  local p = priv[self]
  if not p then
    error("weir.redis." .. what .. ": expected a connection (call it as r:" .. what .. "(...))", 3)
  end
  if p.closed then error(format("weir.redis.%s: connection %q is closed", what, p.name), 3) end
  return p
end

local function bad(fn, what, expected, got)
  error(format("weir.redis.%s: bad '%s' (%s expected, got %s)", fn, what, expected, type(got)), 3)
end

local function opt_ms(fn, t, key, shown)
  local v = t[key]
  if v == nil then return 0 end
  if type(v) ~= "number" or v ~= floor(v) or v < -1 or v > INT32_MAX then
    bad(fn, shown or key, "whole number of ms", v)
  end
  return v
end

local function opt_str(fn, t, key)
  local v = t[key]
  if v ~= nil and type(v) ~= "string" then bad(fn, "opts." .. key, "string", v) end
  return v
end

--- Parse "redis://[user[:password]@]host[:port][/db]" into connect() options
-- (host stays as written: resolve names before connecting).
function M.parse_url(url)
  if type(url) ~= "string" then bad("parse_url", "url", "string", url) end
  if url:match("^rediss://") then
    return nil, errors.new("invalid", "redis: TLS (rediss://) needs its certificates: give them"
                           .. " to connect() as opts.tls, or use a weir.yaml connection")
  end
  local rest = url:match("^redis://(.*)$")
  if not rest then return nil, errors.new("invalid", "redis: url must start with redis://") end
  local function unescape(s)
    return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
  end
  local o = {}
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if auth then
    local u, pw = auth:match("^([^:]*):(.*)$")
    if u then
      if u ~= "" then o.user = unescape(u) end
      if pw ~= "" then o.password = unescape(pw) end
    elseif auth ~= "" then
      o.password = unescape(auth) -- redis://secret@host: a password alone
    end
  else
    hostpart = rest
  end
  local hp, db = hostpart:match("^([^/]*)/?(%d*)$")
  if not hp then return nil, errors.new("invalid", "redis: bad url path (expected /DB)") end
  local host, port = hp:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = hp:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then return nil, errors.new("invalid", "redis: url has no host") end
  o.host = host
  o.port = tonumber(port) or 6379
  o.db = tonumber(db) or 0
  return o
end

--- The pool handle for connection `name` (created on first use in this
-- process; same options give the same pool, changed options replace it).
-- opts: host (numeric IP), port, password, user, db, timeout (ms per reply),
-- connect_timeout (ms), max_reply (bytes), pool = { max, idle_timeout,
-- max_lifetime, validate_idle } (ms; -1 = never), tls = { ca, cert, key
-- (PEM text), host (the name the server's certificate must be for) }.
-- Connects lazily.
function M.connect(name, opts)
  if type(name) ~= "string" or name == "" then bad("connect", "name", "non-empty string", name) end
  if type(opts) ~= "table" then bad("connect", "opts", "table", opts) end
  local host = opt_str("connect", opts, "host")
  if not host then bad("connect", "opts.host", "string", nil) end
  local port = opts.port
  if type(port) ~= "number" or port ~= floor(port) or port < 1 or port > 65535 then
    bad("connect", "opts.port", "port number", port)
  end
  local db = opts.db or 0
  if type(db) ~= "number" or db ~= floor(db) or db < 0 or db > INT32_MAX then
    bad("connect", "opts.db", "database index", db)
  end
  local password, user = opt_str("connect", opts, "password"), opt_str("connect", opts, "user")
  local pool = opts.pool or {}
  if type(pool) ~= "table" then bad("connect", "opts.pool", "table", pool) end
  local max_reply = opts.max_reply or 0
  if type(max_reply) ~= "number" or max_reply < 0 or max_reply ~= floor(max_reply) then
    bad("connect", "opts.max_reply", "byte count", max_reply)
  end
  local pmax = pool.max or 0
  if type(pmax) ~= "number" or pmax < 0 or pmax ~= floor(pmax) or pmax > 10000 then
    bad("connect", "opts.pool.max", "connection count", pmax)
  end

  local tls = opts.tls
  if tls ~= nil and (type(tls) ~= "table" or type(tls.ca) ~= "string" or type(tls.host) ~= "string") then
    bad("connect", "opts.tls", "table with ca and host strings", tls)
  end
  local o = ffi.new("weir_redis_opts")
  o.host, o.port, o.password, o.username, o.db = host, port, password, user, db
  if tls then
    o.tls_ca, o.tls_host = tls.ca, tls.host
    o.tls_cert, o.tls_key = opt_str("connect", tls, "cert"), opt_str("connect", tls, "key")
  end
  o.connect_timeout_ms = opt_ms("connect", opts, "connect_timeout", "opts.connect_timeout")
  o.command_timeout_ms = opt_ms("connect", opts, "timeout", "opts.timeout")
  local pmin = pool.min or 0
  if type(pmin) ~= "number" or pmin < 0 or pmin ~= floor(pmin) or pmin > pmax and pmax > 0 then
    bad("connect", "opts.pool.min", "connection count, at most max", pmin)
  end
  o.min_size = pmin
  o.max_size = pmax
  o.idle_timeout_ms = opt_ms("connect", pool, "idle_timeout", "opts.pool.idle_timeout")
  o.max_lifetime_ms = opt_ms("connect", pool, "max_lifetime", "opts.pool.max_lifetime")
  o.validate_after_ms = opt_ms("connect", pool, "validate_idle", "opts.pool.validate_idle")
  o.max_reply_bytes = max_reply
  local out = ffi.new("weir_redis_pool *[1]")
  local ok, err = F.check(C.weir_ffi_redis_pool_get(name, o, out, F.errbuf, F.errlen))
  if not ok then return nil, err end
  local handle = setmetatable({}, R_mt)
  priv[handle] = {
    name = name,
    pool = ffi.gc(out[0], C.weir_ffi_redis_pool_release),
  }
  return handle
end

--- Remove pool `name` from this process's registry (its idle connections
-- close; handles still open keep working until closed).
function M.drop(name)
  if type(name) ~= "string" then bad("drop", "name", "string", name) end
  return C.weir_ffi_redis_pool_drop(name) == 0
end

--- Give this handle back (the pool stays registered for later attempts).
-- Safe to call twice.
function R:close()
  local p = priv[self]
  if not p or p.closed then return end
  p.closed = true
  ffi.gc(p.pool, nil)
  C.weir_ffi_redis_pool_release(p.pool)
  p.pool = nil
end

-- Check one command's arguments: strings and numbers, no holes.
local function check_cmd(fn, n, args, lvl)
  if n < 1 or type(args[1]) ~= "string" or args[1] == "" then
    error(format("weir.redis.%s: bad command name (string expected, got %s)", fn, type(args[1])), lvl)
  end
  for i = 2, n do
    local t = type(args[i])
    if t ~= "string" and (t ~= "number" or args[i] ~= args[i]) then
      error(format("weir.redis.%s: bad argument #%d to %s (string or number expected, got %s)",
                   fn, i - 1, args[1], t), lvl)
    end
  end
end

--- Run one command: the reply, or nil, err (an error reply included).
function R:command(...)
  local p = state(self, "command")
  local args = { ... }
  check_cmd("command", select("#", ...), args, 3)
  return N.command(p.pool, args, 0, errmt)
end

local function run_pipeline(p, cmds)
  local res, err = N.pipeline(p.pool, cmds, errmt)
  if not res then return nil, err end
  for i = 1, #res do
    if errors.is(res[i]) then return res, res[i] end
  end
  return res
end

--- Send commands in one round trip over one connection:
-- r:pipeline(function(p) p:command("SET", "a", 1) ... end) or
-- r:pipeline({ {"SET", "a", 1}, ... }). Returns the replies in order (an
-- error reply is an err value in its slot), plus the first such error;
-- nil, err when the connection failed.
function R:pipeline(spec)
  local p = state(self, "pipeline")
  local cmds = {}
  if type(spec) == "function" then
    local builder = {
      command = function(_, ...)
        local args = { ... }
        check_cmd("pipeline", select("#", ...), args, 3)
        cmds[#cmds + 1] = args
        return #cmds
      end,
    }
    spec(builder)
  elseif type(spec) == "table" then
    for i, c in ipairs(spec) do
      if type(c) ~= "table" then
        error(format("weir.redis.pipeline: bad command #%d (table expected, got %s)", i, type(c)), 2)
      end
      check_cmd("pipeline", #c, c, 3)
      cmds[i] = c
    end
  else
    bad("pipeline", "spec", "function or table", spec)
  end
  return run_pipeline(p, cmds)
end

--- Round-trip time of a PING in ms, or nil, err.
function R:ping()
  local p = state(self, "ping")
  local ms = ffi.new("double[1]")
  local rc = C.weir_ffi_redis_ping(p.pool, ms, F.errbuf, F.errlen)
  local ok, e = F.check(rc)
  if not ok then
    e.transient = C.weir_ffi_redis_transient(rc) == 1
    return nil, e
  end
  return ms[0]
end

--- The pool's counters: open, idle, in_use, retired, connects, dropped.
function R:stats()
  local p = state(self, "stats")
  local s = ffi.new("weir_redis_stats")
  C.weir_ffi_redis_pool_stats(p.pool, s)
  return { open = s.open, idle = s.idle, in_use = s.in_use, retired = s.retired ~= 0,
           connects = tonumber(s.connects), dropped = tonumber(s.dropped) }
end

-- ---- pulls -----------------------------------------------------------------

local function opt_count(fn, v, what, default)
  if v == nil then return default end
  if type(v) ~= "number" or v < 1 or v ~= floor(v) then bad(fn, what, "positive whole number", v) end
  return v
end

-- Split pending into a batch of at most n rows and the rest.
local function take(pending, n)
  local len = #pending
  if len <= n then return pending, {} end
  local out, rest = {}, {}
  for i = 1, n do out[i] = pending[i] end
  for i = n + 1, len do rest[i - n] = pending[i] end
  return out, rest
end

-- A pull over a cursor command (SCAN, HSCAN): args(cursor) builds it.
local function cursor_pull(p, shape, batch, args)
  local cursor, done, pending = "0", false, {}
  return function()
    while #pending < batch and not done do
      local c, rows = N.command(p.pool, args(cursor), shape, errmt)
      if c == nil then M.raise(rows) end
      cursor, done = c, c == "0"
      if #pending == 0 then
        pending = rows
      else
        for i = 1, #rows do pending[#pending + 1] = rows[i] end
      end
    end
    if #pending == 0 then return nil end
    local out
    out, pending = take(pending, batch)
    return out
  end
end

--- A pull over the keys matching `match` (nil: all): batches of { key = }
-- rows. count is SCAN's COUNT hint. Keys changed during the scan may be
-- missed or repeated (SCAN's guarantee).
function R:scan_pull(match, count, batch)
  local p = state(self, "scan_pull")
  if match ~= nil and type(match) ~= "string" then bad("scan_pull", "match", "string", match) end
  batch = opt_count("scan_pull", batch, "batch", 1000)
  count = opt_count("scan_pull", count, "count", batch)
  return cursor_pull(p, SHAPE_SCAN, batch, function(cursor)
    if match then return { "SCAN", cursor, "MATCH", match, "COUNT", count } end
    return { "SCAN", cursor, "COUNT", count }
  end)
end

--- A pull over the hash `key`: batches of { field =, value = } rows.
function R:hscan_pull(key, batch)
  local p = state(self, "hscan_pull")
  if type(key) ~= "string" then bad("hscan_pull", "key", "string", key) end
  batch = opt_count("hscan_pull", batch, "batch", 1000)
  return cursor_pull(p, SHAPE_HSCAN, batch, function(cursor)
    return { "HSCAN", key, cursor, "COUNT", batch }
  end)
end

--- A pull over the stream `key` from start to stop (ids, "-" and "+" by
-- default): batches of { id =, field = value... } rows.
function R:xrange_pull(key, start, stop, batch)
  local p = state(self, "xrange_pull")
  if type(key) ~= "string" then bad("xrange_pull", "key", "string", key) end
  start, stop = start or "-", stop or "+"
  if type(start) ~= "string" then bad("xrange_pull", "start", "string", start) end
  if type(stop) ~= "string" then bad("xrange_pull", "stop", "string", stop) end
  batch = opt_count("xrange_pull", batch, "batch", 1000)
  local from, done = start, false
  return function()
    if done then return nil end
    local rows, last = N.command(p.pool, { "XRANGE", key, from, stop, "COUNT", batch },
                                 SHAPE_XRANGE, errmt)
    if rows == nil then M.raise(last) end
    if #rows < batch then done = true end
    if #rows == 0 then return nil end
    from = "(" .. last -- exclusive start: Redis 6.2+
    return rows
  end
end

-- ---- sinks -------------------------------------------------------------------

-- A row value as a command argument: nil (skip) for nil and NULL, else a
-- string or number; nil, message when it cannot be written.
local function arg_of(v)
  local t = type(v)
  if t == "string" or t == "number" then
    if v ~= v then return nil, "NaN" end
    -- the C printer writes -0 as 0 (an integer for Redis); as data it
    -- keeps its sign
    if v == 0 and t == "number" and 1 / v < 0 then return "-0" end
    return v
  end
  if v == nil or v == NULL then return nil end
  if t == "boolean" then return v and "true" or "false" end
  if t == "table" then return json.encode(v) end
  local text = json.text_of(v) -- a json value read from PostgreSQL
  if text then return text end
  return nil, "cannot write a " .. t
end

local function row_json(row)
  return json.encode(row)
end

-- The field names of a row: opts.fields, or every string key but skip,
-- sorted (pairs order is not stable).
local function field_names(row, fields, skip)
  if fields then return fields end
  local names = {}
  for k in pairs(row) do
    if type(k) == "string" and k ~= skip then names[#names + 1] = k end
  end
  sort(names)
  return names
end

-- Append name/value pairs of row to args; false, message on a bad value.
local function add_fields(args, row, names)
  local n0 = #args
  for _, f in ipairs(names) do
    local v, why = arg_of(row[f])
    if why then return false, format("field %q: %s", f, why) end
    if v ~= nil then
      args[#args + 1] = f
      args[#args + 1] = v
    end
  end
  if #args == n0 then return false, "no fields to write" end
  return true
end

-- Why a row has no value to write: the column is absent, or SQL NULL,
-- which Redis cannot hold.
local function null_value(row, col)
  if row[col] == NULL then
    return format("value column %q is NULL: Redis has no NULL (filter such rows, or give "
                  .. "them a value)", col)
  end
  return format("value column %q is missing", col)
end

local function data_err(p, i, msg)
  return nil, errors.new("invalid", format('redis "%s": row %d: %s', p.name, i, msg))
end

local function check_ttl(ttl)
  if ttl ~= nil and (type(ttl) ~= "number" or ttl < 1 or ttl ~= floor(ttl)) then
    bad("write", "opts.ttl", "positive whole number of seconds", ttl)
  end
  return ttl
end

local function key_of(p, row, i, col)
  local k = row[col]
  if type(k) == "number" then k = tostring(k) end
  if type(k) ~= "string" then
    return data_err(p, i, format("key column %q is %s", col, k == nil and "missing" or type(k)))
  end
  return k
end

-- Queue cmd, written for row i.
local function push(cmds, rowof, cmd, i)
  local n = #cmds + 1
  cmds[n], rowof[n] = cmd, i
end

local builders = {}

function builders.set(p, rows, opts)
  if type(opts.key) ~= "string" then bad("write", "opts.key", "column name", opts.key) end
  if opts.value ~= nil and type(opts.value) ~= "string" then bad("write", "opts.value", "column name", opts.value) end
  local ttl = check_ttl(opts.ttl)
  local cmds, rowof = {}, {}
  for i, row in ipairs(rows) do
    local k, e = key_of(p, row, i, opts.key)
    if not k then return nil, e end
    local v, why
    if opts.value then v, why = arg_of(row[opts.value]) else v, why = row_json(row) end
    if why then return data_err(p, i, why) end
    if v == nil then return data_err(p, i, null_value(row, opts.value)) end
    cmds[i], rowof[i] = ttl and { "SET", k, v, "EX", ttl } or { "SET", k, v }, i
  end
  return cmds, rowof
end

function builders.hset(p, rows, opts)
  if type(opts.key) ~= "string" then bad("write", "opts.key", "column name", opts.key) end
  if opts.fields ~= nil and type(opts.fields) ~= "table" then
    bad("write", "opts.fields", "list of columns", opts.fields)
  end
  local ttl = check_ttl(opts.ttl)
  local cmds, rowof = {}, {}
  for i, row in ipairs(rows) do
    local k, e = key_of(p, row, i, opts.key)
    if not k then return nil, e end
    local args = { "HSET", k }
    local ok, why = add_fields(args, row, field_names(row, opts.fields, opts.key))
    if not ok then return data_err(p, i, why) end
    push(cmds, rowof, args, i)
    if ttl then push(cmds, rowof, { "EXPIRE", k, ttl }, i) end
  end
  return cmds, rowof
end

local PUSH_MAX = 1000 -- values per RPUSH

function builders.rpush(p, rows, opts)
  local list, col = opts.list, opts.key
  if list ~= nil and type(list) ~= "string" then bad("write", "opts.list", "list name", list) end
  if col ~= nil and type(col) ~= "string" then bad("write", "opts.key", "column name", col) end
  if (list == nil) == (col == nil) then
    error("weir.redis.write: rpush needs opts.list (a list name) or opts.key (a column), not both", 3)
  end
  if opts.value ~= nil and type(opts.value) ~= "string" then bad("write", "opts.value", "column name", opts.value) end
  local ttl = check_ttl(opts.ttl)
  local cmds, rowof, cur, seen = {}, {}, nil, {}
  for i, row in ipairs(rows) do
    local k = list
    if col then
      local e
      k, e = key_of(p, row, i, col)
      if not k then return nil, e end
    end
    local v, why
    if opts.value then v, why = arg_of(row[opts.value]) else v, why = row_json(row) end
    if why then return data_err(p, i, why) end
    if v == nil then return data_err(p, i, null_value(row, opts.value)) end
    -- consecutive rows for one list share an RPUSH
    if not cur or cur[2] ~= k or #cur >= PUSH_MAX + 2 then
      cur = { "RPUSH", k }
      push(cmds, rowof, cur, i)
    end
    cur[#cur + 1] = v
    if ttl and not seen[k] then seen[#seen + 1] = k; seen[k] = i end
  end
  if ttl then
    for _, k in ipairs(seen) do push(cmds, rowof, { "EXPIRE", k, ttl }, seen[k]) end
  end
  return cmds, rowof
end

function builders.xadd(p, rows, opts)
  if type(opts.stream) ~= "string" then bad("write", "opts.stream", "stream name", opts.stream) end
  if opts.fields ~= nil and type(opts.fields) ~= "table" then
    bad("write", "opts.fields", "list of columns", opts.fields)
  end
  local maxlen = opts.maxlen
  if maxlen ~= nil and (type(maxlen) ~= "number" or maxlen < 0 or maxlen ~= floor(maxlen)) then
    bad("write", "opts.maxlen", "whole number", maxlen)
  end
  local ttl = check_ttl(opts.ttl)
  local cmds, rowof = {}, {}
  for i, row in ipairs(rows) do
    local args = { "XADD", opts.stream }
    if maxlen then
      args[3], args[4], args[5] = "MAXLEN", opts.exact and "=" or "~", maxlen
    end
    args[#args + 1] = "*"
    local ok, why = add_fields(args, row, field_names(row, opts.fields, nil))
    if not ok then return data_err(p, i, why) end
    cmds[i], rowof[i] = args, i
  end
  if ttl then push(cmds, rowof, { "EXPIRE", opts.stream, ttl }, #rows) end
  return cmds, rowof
end

--- Write a batch of rows, pipelined: kind "set" (opts.key, opts.value
-- columns; no value column: the row as JSON), "hset" (opts.key column;
-- opts.fields or the other columns), "rpush" (opts.list name or opts.key
-- column; opts.value column or the row as JSON), "xadd" (opts.stream;
-- opts.fields or all columns; opts.maxlen, approximate unless opts.exact).
-- opts.ttl (seconds) sets an expiry on every key written. Returns the
-- number of rows written, or nil, err (err.row: the failing row; rows
-- before it may have been written).
function R:write(kind, rows, opts)
  local p = state(self, "write")
  local build = builders[kind]
  if not build then
    error(format("weir.redis.write: bad kind %s (set, hset, rpush or xadd expected)", tostring(kind)), 2)
  end
  if type(rows) ~= "table" then bad("write", "rows", "array of rows", rows) end
  opts = opts or {}
  if type(opts) ~= "table" then bad("write", "opts", "table", opts) end
  for i = 1, #rows do
    if type(rows[i]) ~= "table" then
      error(format("weir.redis.write: bad row #%d (table expected, got %s)", i, type(rows[i])), 2)
    end
  end
  if #rows == 0 then return 0 end
  local cmds, rowof = build(p, rows, opts)
  if not cmds then return nil, rowof end
  if opts.before then
    -- extra commands shift the replies: map each back to its row
    local out, map = opts.before(cmds), {}
    local j = 1
    for i = 1, #out do
      if out[i] == cmds[j] then map[i] = rowof[j]; j = j + 1 else map[i] = rowof[j] end
    end
    cmds, rowof = out, map
  end
  local res, err = run_pipeline(p, cmds)
  if not res then return nil, err end
  if err then
    for i = 1, #res do
      if res[i] == err then err.row = rowof[i]; break end
    end
    return nil, err
  end
  return #rows
end

-- what tasks see ---------------------------------------------------------
-- ctx.source(NAME) / ctx.sink(NAME) for a redis connection of weir.yaml: an
-- opaque object whose calls raise on error (noted with their retry
-- verdict) and go through the connection's circuit breaker.

--- A handle for a normalized weir.yaml redis connection (raises on bad
-- options).

local breaker = require("weir.breaker")
local T = {}

function M.from_config(cfg)
  local pool = cfg.pool or {}
  local h, err = M.connect(cfg.name, {
    host = cfg.hostaddr or cfg.host, port = cfg.port, password = cfg.password, user = cfg.user,
    db = cfg.database or 0, timeout = cfg.timeout_ms, connect_timeout = cfg.connect_timeout_ms,
    max_reply = cfg.max_reply_bytes,
    tls = cfg.tls and { ca = cfg.tls.ca, cert = cfg.tls.cert, key = cfg.tls.key, host = cfg.host },
    -- weir.yaml's 0 means "never", as for PostgreSQL (0 here: the default)
    pool = { min = pool.min, max = pool.max,
             idle_timeout = pool.idle_timeout_ms == 0 and -1 or pool.idle_timeout_ms,
             max_lifetime = pool.max_lifetime_ms == 0 and -1 or pool.max_lifetime_ms },
  })
  if not h then M.raise(err) end
  return h
end

local function tstate(x, what) return stream.owned(x, "redis", what) end

-- fn(handle) under the breaker; a failed call raises err (transient ones
-- count against the breaker).
local function guarded(p, fn)
  breaker.allow(p.cfg)
  local res, err = fn(p.h)
  if res == nil and err ~= nil then
    breaker.record(p.cfg, not (type(err) == "table" and err.transient))
    M.raise(err)
  end
  breaker.record(p.cfg, true)
  return res
end

--- r:command(cmd, ...): one command; returns the reply (nil replies are
-- ctx.NULL). Raises on an error reply or a lost connection.
function T.command(r, ...)
  local p = tstate(r, "command")
  local args = { n = select("#", ...), ... }
  return guarded(p, function(h) return h:command(unpack(args, 1, args.n)) end)
end

--- r:pipeline({ {cmd, ...}, ... }): one round trip; returns the replies.
function T.pipeline(r, cmds)
  local p = tstate(r, "pipeline")
  return guarded(p, function(h)
    local res, err = h:pipeline(cmds)
    if res and err then return nil, err end
    return res, err
  end)
end

local function pull_stream(p, key, make)
  local A = p.A
  local ds = A.dataset(lineage.redis(p.cfg, key), "input")
  breaker.allow(p.cfg)
  local inner = make(p.h)
  return stream.new_stream(function()
    local ok, b = pcall(inner)
    if not ok then
      breaker.record(p.cfg, false)
      error(b, 0)
    end
    if b then
      A.stats.rows_in = A.stats.rows_in + #b
      ds.rows = ds.rows + #b
    end
    return b
  end, nil, {})
end

--- r:scan(match, opts) / r:hscan(key) / r:xrange(key, start, stop): streams
-- of rows { key }, { field, value }, { id, <fields> } in constant memory.
function T.scan(r, match, opts)
  local p = tstate(r, "scan")
  opts = opts or {}
  return pull_stream(p, type(match) == "string" and match or "*",
                     function(h) return h:scan_pull(match, opts.count, opts.batch) end)
end
function T.hscan(r, key, opts)
  local p = tstate(r, "hscan")
  return pull_stream(p, tostring(key), function(h) return h:hscan_pull(key, opts and opts.batch) end)
end
function T.xrange(r, key, start, stop, opts)
  local p = tstate(r, "xrange")
  return pull_stream(p, tostring(key), function(h)
    return h:xrange_pull(key, start or "-", stop or "+", opts and opts.batch)
  end)
end

--- The object a task gets for connection cfg.
function M.for_task(cfg, A, opened)
  local p = { cfg = cfg, A = A, opened = opened }
  p.h = M.from_config(cfg)
  opened[#opened + 1] = function() p.h:close() end
  return stream.new_object("redis", T, p)
end

-- s:into(r, kind, opts): kind is set, hset, rpush or xadd (see write).
-- rpush and xadd append: a retried attempt would append again. With
-- opts.replace, every list or stream the load writes is emptied (DEL)
-- before this attempt's first append to it, so after any number of
-- attempts it holds the last attempt's rows once.
local function replacing(kind, opts)
  if not opts.replace then return opts end
  if kind ~= "rpush" and kind ~= "xadd" then
    error(format("weir.redis.write: opts.replace is for rpush and xadd (%s rewrites by key)",
                 tostring(kind)), 3)
  end
  local cleared = {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.before = function(cmds)
    local out = {}
    for _, c in ipairs(cmds) do
      local name = (c[1] == "RPUSH" or c[1] == "XADD") and c[2]
      if name and not cleared[name] then
        cleared[name] = true
        out[#out + 1] = { "DEL", name }
      end
      out[#out + 1] = c
    end
    return out
  end
  return o
end

local function sink(sp, dp, kind, opts)
  opts = replacing(kind, opts or {})
  local n, batch = 0, sp.pull()
  -- lineage: the list or stream named, else the pattern of the keys the
  -- rows gave ("user:*")
  local key = opts.stream or opts.list
  local pattern, columns
  while batch do
    local k = guarded(dp, function(h) return h:write(kind, batch, opts or {}) end)
    n = n + k
    columns = columns or lineage.row_columns(nil, batch)
    if not key and type(opts.key) == "string" then
      for i = 1, #batch do
        local v = batch[i][opts.key]
        if v ~= nil then pattern = lineage.key_pattern(pattern, tostring(v)) end
      end
    end
    batch = sp.pull()
  end
  dp.A.stats.rows_out = dp.A.stats.rows_out + n
  local d = dp.A.dataset(lineage.redis(dp.cfg, key or pattern or "*"), "output")
  d.rows = d.rows + n
  d.columns = d.columns or columns
  return { rows = n, kind = kind }
end
stream.sinks.redis = sink

--- One round trip for weir health; raises on failure.
function M.ping(cfg)
  local ms, err = M.from_config(cfg):ping()
  if not ms then error(tostring(err), 0) end
end

-- ---- weir.yaml -------------------------------------------------------------

--- Defaults of a normalized connection (durations in ms, sizes in bytes).
M.DEFAULTS = {
  host = "localhost", port = 6379, database = 0, connect_timeout_ms = 10000,
  timeout_ms = 30000, max_reply_bytes = 64 * 1024 * 1024,
}

local TLS_FILES = { ca = true, cert = true, key = true }

--- weir.yaml's entry of a redis connection, checked and normalized (as
-- the postgres connector's normalize does).
function M.normalize(name, c, base, f)
  local st, add = f.st, f.st.add
  local d = M.DEFAULTS
  local u = f.url_of(c, base, st, { redis = true, rediss = true }, "redis:// or rediss://")
  if u.path then
    local db = u.path:match("^/(%d+)$")
    if db then
      u.database = db
    elseif u.path ~= "/" then
      f.url_error(st, base .. ".url", u, "the URL's path must be /DATABASE (an integer)")
    end
  end
  if u.query and #u.query > 0 then
    f.url_error(st, base .. ".url", u, "URL parameters are not supported")
  end
  f.keep_url_password(u, st)
  local conn = { name = name, type = "redis" }
  conn.host = f.str_field(c, u, "host", base, st) or d.host
  local port, pport = f.pick(c, u, "port", base)
  conn.port = port ~= nil and f.int_in(port, 1, 65535, pport, add) or d.port
  local db, dpath = f.pick(c, u, "database", base)
  conn.database = db ~= nil and f.int_in(db, 0, 2147483647, dpath, add) or d.database
  conn.user = f.str_field(c, u, "user", base, st)
  conn.password = f.password_of(c, u, base, st)
  if conn.user and conn.password == nil then
    add(base, "a redis user needs a password")
  end
  conn.connect_timeout_ms = c.connect_timeout ~= nil
    and f.ms_of(c.connect_timeout, base .. ".connect_timeout", add, 1) or d.connect_timeout_ms
  conn.timeout_ms = c.timeout ~= nil and f.ms_of(c.timeout, base .. ".timeout", add, 1) or d.timeout_ms
  conn.max_reply_bytes = c.max_reply_size ~= nil
    and f.bytes_of(c.max_reply_size, base .. ".max_reply_size", add) or d.max_reply_bytes
  conn.pool = f.pool_of(c.pool, base .. ".pool", add)
  conn.breaker = f.breaker_of(c.breaker, base .. ".breaker", add)
  -- rediss:// or a tls block: TLS, the server's certificate checked
  -- against tls.ca (default: OpenSSL's bundle) and the host name
  if u.scheme == "rediss" or c.tls ~= nil then
    local raw = type(c.tls) == "table" and c.tls or {}
    conn.tls = f.tls_of(c, base, st, TLS_FILES, { ca = raw.ca == nil and "system" or nil })
  end
  return conn
end

return M
