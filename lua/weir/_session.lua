-- weir._session: a weir repl session, inside a worker (docs/adr/0045).
--
-- The worker keeps this state between jobs (WEIR_JOB_KEEP): the sandboxed
-- environment of the session (its globals are the user's variables), the
-- ctx (built as weir._attempt builds a task's, from the same job fields)
-- and the last result. Each job is one operation: eval a chunk, show more
-- of the last result, complete a word, the tasks of a loaded pipeline,
-- the introspection behind .sql/.tables/.schema. Results are rendered
-- here, where the values live; only text goes back to the REPL.
local sandbox = require("weir.sandbox")
local stream = require("weir.stream")
local native = require("weir._native")
local type, pairs, ipairs, tostring, pcall, xpcall, load, select =
  type, pairs, ipairs, tostring, pcall, xpcall, load, select
local format, rep, concat, sort = string.format, string.rep, table.concat, table.sort
local getmetatable = debug.getmetatable

local M = {}

local S -- the session: env, ctx, close, job, stats, out (print lines), last
local NULL = native.NULL

local function open(job)
  collectgarbage("restart", -1)
  local out = {}
  local stats = { rows_in = 0, rows_out = 0 }
  local function log(line) out[#out + 1] = line end
  local ctx, close = require("weir._ctx").new(job, log, stats)
  local env, by_name = sandbox.new({ ctx = ctx }, log, "repl")
  S = { env = env, by_name = by_name, ctx = ctx, close = close, job = job, stats = stats,
        out = out, n = 0, cache = {} }
end

-- rendering ---------------------------------------------------------------

local PG_TYPES = {
  [16] = "bool", [17] = "bytea", [20] = "int8", [21] = "int2", [23] = "int4", [25] = "text",
  [114] = "json", [700] = "float4", [701] = "float8", [1042] = "bpchar", [1043] = "varchar",
  [1082] = "date", [1083] = "time", [1114] = "timestamp", [1184] = "timestamptz",
  [1186] = "interval", [1700] = "numeric", [2950] = "uuid", [3802] = "jsonb",
}

local function is_stream(v)
  local p = type(v) == "table" and stream.state(v)
  return p and p.kind == "stream" and p or nil
end

local function cell(v)
  if v == nil then return "" end
  if v == NULL then return nil end -- NULL: the caller marks it
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return native.num_format(v) end
  if t == "boolean" then return tostring(v) end
  return require("weir.json").encode(v, { max_depth = 8 })
end

-- Display width of a UTF-8 string (code points; wide characters count 1).
local function width(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

-- s cut to at most w display columns, with the marker when cut.
local function cut(s, w)
  s = s:gsub("[%c]", function(c) return c == "\t" and " " or "\194\183" end)
  if width(s) <= w then return s end
  local out, n = {}, 0
  for ch in s:gmatch("[^\128-\191][\128-\191]*") do
    if n + 1 > w - 1 then break end
    out[#out + 1] = ch
    n = n + 1
  end
  return concat(out) .. "\226\128\166" -- ...
end

local function pad(s, w, right)
  local n = w - width(s)
  if n <= 0 then return s end
  return right and rep(" ", n) .. s or s .. rep(" ", n)
end

-- The columns of rows: the stream's own order, then other keys (sorted),
-- as a sink sees them.
local function columns(p, rows) return stream.sink_columns(p or {}, rows) end

local function col_types(p, cols, rows)
  local oids = p and p.shared and p.shared.pg_oids
  local types = {}
  for i, c in ipairs(cols) do
    local t
    if oids and p.columns and p.columns[i] == c and oids[i] then
      t = PG_TYPES[tonumber(oids[i])] or ("oid " .. tostring(oids[i]))
    else
      for _, r in ipairs(rows) do
        local v = type(r) == "table" and r[c]
        if v ~= nil and v ~= NULL then t = type(v); break end
      end
    end
    types[i] = t or "?"
  end
  return types
end

-- A table of rows as text in mode o.mode; o.null (how NULL shows),
-- o.color, o.maxw (widest column), o.header (print names and types).
local function render_rows(rows, cols, types, o)
  local mode = o.mode or "table"
  local out = {}
  if mode == "json" or mode == "jsonl" then
    local json = require("weir.json")
    local lines = {}
    for i, r in ipairs(rows) do
      local obj = {}
      for _, c in ipairs(cols) do obj[#obj + 1] = json._quote(c) .. ":" .. json.encode(r[c] == nil
        and NULL or r[c]) end
      lines[i] = "{" .. concat(obj, mode == "json" and ", " or ",") .. "}"
    end
    if mode == "jsonl" then return concat(lines, "\n") end
    if o.header == false then return concat(lines, ",\n") end
    return "[\n" .. concat(lines, ",\n") .. "\n]"
  elseif mode == "csv" then
    local function q(s)
      if s:find('[",\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
      return s
    end
    if o.header ~= false then
      local h = {}
      for i, c in ipairs(cols) do h[i] = q(c) end
      out[1] = concat(h, ",")
    end
    for _, r in ipairs(rows) do
      local f = {}
      for i, c in ipairs(cols) do f[i] = q(cell(r[c]) or "") end
      out[#out + 1] = concat(f, ",")
    end
    return concat(out, "\n")
  end
  -- table: widths from the names, the types and the values shown
  local maxw = o.maxw or 40
  local null = o.color and "\27[2mNULL\27[0m" or "NULL"
  local grid, widths, numeric = {}, {}, {}
  for i, c in ipairs(cols) do
    widths[i] = math.min(maxw, math.max(width(c), width(types[i])))
    numeric[i] = types[i]:match("^int") or types[i]:match("^float") or types[i] == "numeric"
                 or types[i] == "number"
  end
  for k, r in ipairs(rows) do
    local line = {}
    for i, c in ipairs(cols) do
      local s = cell(r[c])
      if s then s = cut(s, maxw) end
      line[i] = s
      widths[i] = math.max(widths[i], s and width(s) or 4)
    end
    grid[k] = line
  end
  local function row_text(vals, is_values)
    local f = {}
    for i = 1, #cols do
      local s = vals[i]
      if s == nil and is_values then
        f[i] = pad("", widths[i] - 4) .. null
        if not numeric[i] then f[i] = null .. pad("", widths[i] - 4) end
      else
        f[i] = pad(s or "", widths[i], is_values and numeric[i])
      end
    end
    return (concat(f, " | "):gsub("%s+$", ""))
  end
  if o.header ~= false then
    local names, ts, rule = {}, {}, {}
    for i, c in ipairs(cols) do
      names[i] = cut(c, maxw)
      ts[i] = cut(types[i], maxw)
      rule[i] = rep("-", widths[i])
    end
    local b, d = o.color and "\27[1m" or "", o.color and "\27[2m" or ""
    local z = o.color and "\27[0m" or ""
    out[1] = b .. row_text(names) .. z
    out[2] = d .. row_text(ts) .. z
    out[3] = concat(rule, "-+-")
  end
  for _, line in ipairs(grid) do out[#out + 1] = row_text(line, true) end
  return concat(out, "\n")
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  return "[" .. (type(k) == "string" and format("%q", k) or tostring(k)) .. "]"
end

local function value_text(v)
  local t = type(v)
  if t == "string" then return (format("%q", v):gsub("\\\n", "\\n")) end
  if t == "number" then return native.num_format(v) end
  if v == NULL then return "NULL" end
  if t == "table" then
    local p = stream.state(v)
    if p then
      local what = p.kind == "stream" and "stream" or p.kind
      if p.cfg and p.cfg.name then what = what .. " " .. p.cfg.name end
      return "<" .. what .. ">"
    end
  end
  if t == "function" then return "<function>" end
  return (tostring(v):gsub(": 0x%x+", ""))
end

-- A Lua value pretty-printed: nested tables indented, keys sorted, an
-- array part in order, a table met again while printing it marked.
local function pretty(v, o)
  local ids, n = {}, 0
  local function go(x, indent, open_set)
    if type(x) ~= "table" or stream.state(x) then return value_text(x) end
    if open_set[x] then return "<cycle: table " .. ids[x] .. ">" end
    if not ids[x] then n = n + 1; ids[x] = n end
    open_set[x] = true
    local parts, len = {}, 0
    local count = #x
    for i = 1, count do parts[#parts + 1] = go(x[i], indent .. "  ", open_set) end
    local keys = {}
    for k in pairs(x) do
      if not (type(k) == "number" and k >= 1 and k <= count and k % 1 == 0) then
        keys[#keys + 1] = k
      end
    end
    sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then return ta < tb end
      if ta == "number" or ta == "string" then return a < b end
      return tostring(a) < tostring(b)
    end)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = key_text(k) .. " = " .. go(x[k], indent .. "  ", open_set)
    end
    open_set[x] = nil
    for _, s in ipairs(parts) do len = len + #s + 2 end
    if #parts == 0 then return "{}" end
    local multi = false
    for _, s in ipairs(parts) do if s:find("\n") then multi = true end end
    if not multi and len + #indent < (o.width or 78) then
      return "{ " .. concat(parts, ", ") .. " }"
    end
    return "{\n" .. indent .. "  " .. concat(parts, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
  end
  return go(v, "", {})
end
M.pretty = pretty

-- A list of row tables (every element a table with string keys) shows as
-- rows in the table modes too.
local function row_list(v)
  if type(v) ~= "table" or stream.state(v) or #v == 0 then return false end
  for i = 1, math.min(#v, 50) do
    local r = v[i]
    if type(r) ~= "table" or stream.state(r) or #r > 0 or next(r) == nil then return false end
  end
  return true
end

-- Pull up to n rows from stream state p (batches cut; the rest kept).
local function take(L, n)
  local rows = {}
  while #rows < n do
    local b = L.buf
    if not b or L.i > #b then
      if L.done then break end
      b = L.p.pull()
      if not b then L.done = true; break end
      L.buf, L.i = b, 1
    end
    while L.i <= #b and #rows < n do
      rows[#rows + 1] = b[L.i]
      L.i = L.i + 1
    end
  end
  return rows
end

local function more_left(L)
  if L.done then return false end
  if L.buf and L.i <= #L.buf then return true end
  local b = L.p.pull()
  if not b then L.done = true; return false end
  L.buf, L.i = b, 1
  return #b > 0 or more_left(L)
end

-- The last result dropped: a query it previewed is closed (its
-- connection goes, so the server stops sending the rest).
local function drop_last()
  local L = S.last and S.last.stream
  S.last = nil
  local close = L and L.p.shared and L.p.shared.close
  if close then pcall(close) end
end

-- Render value v (the result of a chunk) for o: returns text and the
-- number of rows shown (streams and row lists).
local function show(v, o)
  drop_last()
  local p = is_stream(v)
  if p then
    local L = { p = p, i = 1 }
    S.last = { stream = L }
    -- a query not yet run, previewed as it is: it runs with a LIMIT
    local sh = p.shared
    if sh and sh.preview and sh.source == p.pull then L.limited = sh.preview((o.rows or 20) + 1) end
    local rows = take(L, o.rows or 20)
    local more = more_left(L)
    local cols = columns(p, rows)
    local types = col_types(p, cols, rows)
    L.cols, L.types, L.shown = cols, types, #rows
    local text = render_rows(rows, cols, types, o)
    if o.mode == "table" or not o.mode then
      text = text .. format("\n(%d row%s%s)", #rows, #rows == 1 and "" or "s",
                            more and ", more exist: .last shows them all" or "")
    end
    L.rows = rows
    return text, #rows
  end
  S.last = { value = v }
  if row_list(v) and (o.mode or "table") ~= "lua" then
    local cols = columns(nil, v)
    local shown = {}
    for i = 1, math.min(#v, o.rows or 20) do shown[i] = v[i] end
    local text = render_rows(shown, cols, col_types(nil, cols, v), o)
    if o.mode == "table" or not o.mode then
      text = text .. format("\n(%d of %d row%s)", #shown, #v, #v == 1 and "" or "s")
    end
    return text, #shown
  end
  if o.mode == "json" or o.mode == "jsonl" then
    local ok, t = pcall(require("weir.json").encode, v, { max_depth = 32 })
    if ok then return t, 0 end
  end
  return pretty(v, o), 0
end

-- operations ----------------------------------------------------------

local function result_of(ok, fn_res, o, t0, rows0)
  local printed = concat(S.out, "\n")
  for i = #S.out, 1, -1 do S.out[i] = nil end
  if not ok then
    return { status = "failed", error = fn_res, printed = printed }
  end
  local texts, rows = {}, 0
  for i = 1, fn_res.n do
    local okr, t, n = pcall(show, fn_res[i], o)
    if not okr then return { status = "failed", error = sandbox.describe_error(t), printed = printed } end
    texts[#texts + 1] = t
    rows = rows + n
  end
  local _, peak = native.memory()
  return { status = "success", text = concat(texts, "\n"), printed = printed, rows = rows,
           rows_in = S.stats.rows_in - rows0, mem = peak, elapsed = native.now() - t0 }
end

local function packn(...) return { n = select("#", ...), ... } end

local function run_fn(fn, o)
  drop_last()
  local t0, rows0 = native.now(), S.stats.rows_in
  local ok, res = xpcall(function() return packn(fn()) end, function(e)
    -- an error of the trusted library named where it was raised, not
    -- the user's line: the place is left out (weir._attempt blames the
    -- task's line; a chunk is one line or a few)
    return (sandbox.describe_error(e):gsub("^weir/[%w_/]+%.lua:%d+: ", "", 1))
  end)
  return result_of(ok, res, o, t0, rows0)
end

local ops = {}

--- eval: job.code, compiled as an expression (return CODE) when it is
-- one, else as statements.
function ops.eval(job, o)
  S.n = S.n + 1
  local fn = load("return " .. job.code, "=repl", "t", S.env)
  if not fn then
    local err
    fn, err = load(job.code, "=repl", "t", S.env)
    if not fn then return { status = "failed", error = err } end
  end
  return run_fn(fn, o)
end

--- more: the next rows of the last result (.last), or all of a value.
function ops.more(job, o)
  local last = S.last
  if not last then return { status = "success", text = "", done = true } end
  if last.value ~= nil then
    o.rows = math.huge
    local v = last.value
    local text = show(v, o)
    drop_last()
    return { status = "success", text = text, done = true }
  end
  local L = last.stream
  if L.limited then
    -- the preview ran with a LIMIT: the whole result is a new query
    local pull, close = L.p.shared.again()
    pcall(L.p.shared.close)
    L.p = { pull = pull, columns = L.p.columns, shared = { close = close } }
    L.buf, L.i, L.done, L.limited, L.rows = nil, 1, false, false, {}
  end
  local rows
  if L.rows then
    rows = L.rows
    L.rows = nil
    for _, r in ipairs(take(L, (job.rows or 1000) - #rows)) do rows[#rows + 1] = r end
  else
    o.header = false
    rows = take(L, job.rows or 1000)
  end
  local done = not more_left(L)
  if done then drop_last() end
  local text = render_rows(rows, L.cols, L.types, o)
  return { status = "success", text = text, done = done, rows = #rows }
end

local function conn(name)
  return S.ctx.source(name)
end

--- sql: a query on a connection of weir.yaml, shown like a stream.
function ops.sql(job, o)
  return run_fn(function() return conn(job.conn):query(job.sql) end, o)
end

--- tables / schema: the tables of a connection, a table's columns (all
-- of them shown).
function ops.tables(job, o)
  o.rows = math.huge
  return run_fn(function()
    local out = {}
    for i, t in ipairs(conn(job.conn):tables()) do out[i] = { table = t } end
    return S.ctx.rows(out, { columns = { "table" } })
  end, o)
end

function ops.schema(job, o)
  o.rows = math.huge
  return run_fn(function()
    local out = {}
    for i, c in ipairs(conn(job.conn):columns(job.table)) do
      out[i] = { column = c.name, type = c.type, nullable = c.nullable }
    end
    if #out == 0 then error("no table " .. job.table .. " on " .. job.conn, 0) end
    return S.ctx.rows(out, { columns = { "column", "type", "nullable" } })
  end, o)
end

--- tasks: the run functions of a loaded pipeline, callable as
-- tasks.NAME() (with the session's ctx) in the session.
function ops.tasks(job)
  local ser = require("weir._ser")
  local t = {}
  for name, spec in pairs(job.tasks) do
    local fn, err
    if spec.fn then
      fn, err = ser.decode(spec.fn, { builtins = S.by_name, env = S.env })
    else
      fn, err = load(spec.src, "=" .. name, "t", S.env)
    end
    if not fn then return { status = "failed", error = name .. ": " .. tostring(err) } end
    t[name] = function(ctx) return fn(ctx or S.ctx) end
  end
  S.env.tasks = t
  return { status = "success", text = "" }
end

-- completion ----------------------------------------------------------

local SQL_WORDS = { "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "JOIN", "AND",
                    "OR", "NOT", "NULL", "COUNT", "DISTINCT", "AS", "ON", "INSERT", "UPDATE",
                    "DELETE", "INTO", "VALUES", "HAVING" }

local function cached(key, fn)
  local c = S.cache[key]
  local now = native.now()
  if c and now - c.at < 30000 then return c.v end
  local ok, v = pcall(fn)
  v = ok and v or {}
  S.cache[key] = { v = v, at = now }
  return v
end

local function tables_of(name)
  return cached("t:" .. name, function() return conn(name):tables() end)
end

local function columns_of(name, tbl)
  return cached("c:" .. name .. ":" .. tbl, function()
    local out = {}
    for i, c in ipairs(conn(name):columns(tbl)) do out[i] = c.name end
    return out
  end)
end

-- Every column name of the connection's current schema (PostgreSQL), for
-- SQL that names no table yet (one query, cached).
local ALL_COLUMNS = [[SELECT DISTINCT a.attname AS name FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm')
  AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1 LIMIT 10000]]

local function all_columns_of(name)
  return cached("a:" .. name, function()
    local out = {}
    for i, r in ipairs(conn(name):rows(ALL_COLUMNS)) do out[i] = r.name end
    return out
  end)
end

-- Candidates inside SQL text on connection name: its tables, the columns
-- of the tables the text (the whole line) names, or of every table when
-- it names none, keywords.
local function sql_words(name, text)
  local out = {}
  local named = {}
  for _, t in ipairs(tables_of(name)) do
    out[#out + 1] = t
    local lt = t:lower()
    for w in text:lower():gmatch("[%w_]+") do if w == lt then named[#named + 1] = t end end
  end
  local cols = {}
  if #named == 0 then
    cols = all_columns_of(name)
  else
    for _, t in ipairs(named) do
      for _, c in ipairs(columns_of(name, t)) do cols[#cols + 1] = c end
    end
  end
  for _, c in ipairs(cols) do out[#out + 1] = c end
  for _, k in ipairs(SQL_WORDS) do out[#out + 1] = k end
  return out
end

local function keys_of(v, methods_only)
  local out = {}
  local seen = {}
  local function add(k) if type(k) == "string" and not seen[k] then seen[k] = true; out[#out + 1] = k end end
  for _ = 1, 4 do
    if type(v) ~= "table" then
      if type(v) == "string" then v = S.env.string else break end
    end
    for k, x in pairs(v) do
      if not methods_only or type(x) == "function" then add(k) end
    end
    local mt = getmetatable(v)
    local idx = type(mt) == "table" and rawget(mt, "__index")
    if type(idx) ~= "table" then break end
    v = idx
  end
  return out
end

local LIBS = { "string", "table", "math", "os", "bit", "coroutine" }

-- The candidates for the word before the cursor of line (the text up to
-- it): returns the word's start (1-based) and the candidates.
local function complete(line, full)
  -- meta-commands with a connection (and a table) argument
  local conns = {}
  for k in pairs(S.job.connections or {}) do conns[#conns + 1] = k end
  sort(conns)
  local cmd, rest = line:match("^%.(%a+)%s+(.*)$")
  if cmd == "sql" or cmd == "tables" or cmd == "schema" then
    local c, more = rest:match("^(%S+)%s+(.*)$")
    local start = #line - #(line:match("[%w_]*$")) + 1
    if not c then return start, conns end
    if cmd == "schema" then return start, tables_of(c) end
    if cmd == "sql" then return start, sql_words(c, full or more) end
    return start, {}
  end
  -- inside a string: a connection name, or SQL of a connection's query
  local q = line:match("ctx%.s[oi][un][rk]c?e?%(%s*[\"']([%w_]*)$")
  if q then return #line - #q + 1, conns end
  local cname, sql = line:match("ctx%.source%(%s*[\"']([%w_]+)[\"']%s*%)%s*:%s*query%(%s*[\"'](.*)$")
  if not cname then
    local var
    var, sql = line:match("([%a_][%w_]*)%s*:%s*query%(%s*[\"'](.*)$")
    if var then
      local x = rawget(S.env, var)
      local p = type(x) == "table" and stream.state(x)
      cname = p and p.cfg and p.cfg.name
    end
  end
  if cname and conns then
    local w = sql:match("[%w_]*$")
    return #line - #w + 1, sql_words(cname, full or sql)
  end
  -- a Lua expression: a.b.c or a:b
  local expr = line:match("[%a_][%w_%.:]*$") or ""
  local start = #line - #expr + 1
  local path, sep, last = expr:match("^(.*)([%.:])([%w_]*)$")
  if not path then return start, (function()
    local out = keys_of(S.env)
    for _, n in ipairs(sandbox.allow.base) do out[#out + 1] = n end
    for _, n in ipairs(LIBS) do out[#out + 1] = n end
    for k in pairs(sandbox.wrapped) do out[#out + 1] = k end
    for _, k in ipairs({ "and", "break", "do", "else", "elseif", "end", "false", "for",
                         "function", "if", "in", "local", "nil", "not", "or", "repeat",
                         "return", "then", "true", "until", "while" }) do out[#out + 1] = k end
    return out
  end)() end
  local v = S.env
  for part in path:gmatch("[^%.:]+") do
    local ok, x = pcall(function() return v[part] end)
    if not ok or x == nil then return start, {} end
    v = x
  end
  local names = keys_of(v, sep == ":")
  return #line - #last + 1, names
end

function ops.complete(job)
  local start, cands = complete(job.line, job.full)
  local prefix = job.line:sub(start)
  local out, seen = {}, {}
  for _, c in ipairs(cands) do
    if c:sub(1, #prefix) == prefix and not seen[c] then seen[c] = true; out[#out + 1] = c end
  end
  if #out == 0 and prefix ~= "" then
    -- SQL words and names whatever their case
    local lp = prefix:lower()
    for _, c in ipairs(cands) do
      if c:lower():sub(1, #lp) == lp and not seen[c] then seen[c] = true; out[#out + 1] = c end
    end
  end
  sort(out)
  return { status = "success", start = start, candidates = out }
end

--- Run one session job: open the session on the first, then the
-- operation job.op. The result says whether the session was fresh.
function M.run(job)
  local fresh = S == nil
  if fresh then open(job) end
  local o = { mode = job.mode, rows = job.rows, color = job.color, width = job.width }
  local f = ops[job.op]
  local res
  if not f then
    res = { status = "failed", error = "unknown session operation" }
  else
    local ok, r = pcall(f, job, o)
    res = ok and r or { status = "failed", error = sandbox.describe_error(r) }
  end
  res.fresh = fresh or nil
  return res
end

return M
