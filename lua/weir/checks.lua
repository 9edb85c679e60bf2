-- weir.checks: data-quality checks, declared on a task (`checks = {...}`)
-- or called from one (ctx.check), run inside the attempt after the task's
-- loads committed.
--
-- On a table the checks run in its database: the cheap ones (row_count,
-- not_null, single-column unique, accepted_values, range, freshness, and
-- pattern on PostgreSQL) are aggregates of one SELECT, so they cost one
-- scan together; unique over several columns, relationship and sql are a
-- query each; pattern on SQLite is one pass over the rows here (SQLite
-- has no REGEXP), matched by weir.regex. Identifiers are quoted, values
-- bound. Only a failing check asks for sample rows (LIMIT 5). On a CSV or
-- JSON Lines file every check is evaluated in one streaming pass.
--
-- A result: { name, check, severity, status = pass|warn|fail|error,
-- observed, message, samples (rows, secret-looking columns masked),
-- dataset (a name to show) }. docs/quality.md, ADR 33.
local type, pairs, ipairs, tostring, tonumber, error, pcall, select, unpack, next =
  type, pairs, ipairs, tostring, tonumber, error, pcall, select, unpack, next
local format, concat = string.format, table.concat
local util = require("weir.util")
local NULL = require("weir._native").NULL

local M = {}

M.SAMPLES = 5

-- Options of each kind (besides check, name, severity, dataset), and the
-- ones it needs: a list is "one of these".
local COMMON = { check = true, name = true, severity = true, dataset = true }
M.KINDS = {
  row_count = { opts = { "min", "max" }, need = { { "min", "max" } } },
  not_null = { opts = { "column", "columns" }, need = { { "column", "columns" } } },
  unique = { opts = { "column", "columns" }, need = { { "column", "columns" } } },
  accepted_values = { opts = { "column", "values" }, need = { "column", "values" } },
  range = { opts = { "column", "min", "max" }, need = { "column", { "min", "max" } } },
  pattern = { opts = { "column", "pattern" }, need = { "column", "pattern" } },
  relationship = { opts = { "column", "to" }, need = { "column", "to" } },
  freshness = { opts = { "column", "max_age" }, need = { "column", "max_age" } },
  sql = { opts = { "query", "params", "expect" }, need = { "query" } },
  custom = { opts = { "run" }, need = { "run" } },
}
M.ORDER = { "row_count", "not_null", "unique", "accepted_values", "range", "pattern",
            "relationship", "freshness", "sql", "custom" }

local function is_null(v) return v == nil or v == NULL end

local function regex(src)
  local re, err = require("weir.regex").compile(src)
  if not re then error(err, 0) end
  return re
end

local function columns_of(c)
  if c.columns then return c.columns end
  return { c.column }
end

--- The name a check goes by: its own, or kind(columns).
function M.default_name(c)
  local cols = (c.column or c.columns) and concat(columns_of(c), ",")
  if c.check == "relationship" and type(c.to) == "string" then cols = cols .. "->" .. c.to end
  return cols and format("%s(%s)", tostring(c.check), cols) or tostring(c.check)
end

--- Move the kind of a check written { "not_null", column = ... } to its
-- `check` key (before the schema sees it). Returns the list.
function M.normalize(list)
  if type(list) ~= "table" then return list end
  for _, c in pairs(list) do
    if type(c) == "table" and type(c[1]) == "string" and c.check == nil then
      c.check = c[1]
      c[1] = nil
      -- decoded as an array for its [1]: an object from now on
      setmetatable(c, nil)
    end
  end
  return list
end

--- Semantic checks of a task's `checks` (the schema has seen their
-- types): options that belong to another kind, missing ones, patterns
-- that do not compile, durations, names used twice. add(path, message).
function M.validate(list, base, add)
  if type(list) ~= "table" then return end
  local names = {}
  for i, c in ipairs(list) do
    local p = format("%s[%d]", base, i)
    local kind = type(c) == "table" and M.KINDS[c.check]
    if kind then
      local allowed = {}
      for _, o in ipairs(kind.opts) do allowed[o] = true end
      for k in pairs(c) do
        if not COMMON[k] and not allowed[k] then
          add(p .. "." .. tostring(k), format("not an option of %s (it takes %s)", c.check,
                                               concat(kind.opts, ", ")))
        end
      end
      for _, need in ipairs(kind.need) do
        if type(need) == "table" then
          local any = false
          for _, o in ipairs(need) do if c[o] ~= nil then any = true end end
          if not any then add(p, format("%s needs %s", c.check, concat(need, " or "))) end
        elseif c[need] == nil then
          add(p, format("%s needs %s", c.check, need))
        end
      end
      if c.column ~= nil and c.columns ~= nil then
        add(p, "give column or columns, not both")
      end
      if c.check == "pattern" and type(c.pattern) == "string" then
        local re, err = require("weir.regex").compile(c.pattern)
        if not re then add(p .. ".pattern", tostring(err)) end
      end
      if c.check == "freshness" and c.max_age ~= nil and not util.duration(c.max_age) then
        add(p .. ".max_age", select(2, util.duration(c.max_age)))
      end
      if c.check == "relationship" and type(c.to) == "string" and not c.to:find("^.+%..+$") then
        add(p .. ".to", "expected TABLE.COLUMN")
      end
      if (c.check == "relationship" or c.check == "sql") and type(c.dataset) == "table"
         and (c.dataset.csv or c.dataset.jsonl) then
        add(p .. ".dataset", c.check .. " runs on a table, not on a file")
      end
      local d = c.dataset
      if type(d) == "table" then
        local n = 0
        for _, k in ipairs({ "sqlite", "connection", "csv", "jsonl" }) do
          if d[k] ~= nil then n = n + 1 end
        end
        if n ~= 1 then
          add(p .. ".dataset", "name one of sqlite, connection, csv or jsonl")
        elseif (d.sqlite or d.connection) and d.table == nil then
          add(p .. ".dataset", "a database dataset needs its table")
        elseif (d.csv or d.jsonl) and d.table ~= nil then
          add(p .. ".dataset.table", "a file has no table")
        end
      end
      local name = c.name or M.default_name(c)
      if c.name ~= nil and names[name] then
        add(p .. ".name", format("check name %q is used twice", name))
      end
      names[name] = true
    end
  end
end

-- results ---------------------------------------------------------------

local SECRET = { "pass", "secret", "token", "credential", "api_?key", "private" }

-- A sample row fit to store: columns whose names look secret masked, long
-- strings cut.
local function sample(row)
  local out = {}
  for k, v in pairs(row) do
    local lk = tostring(k):lower()
    for _, pat in ipairs(SECRET) do
      if lk:find(pat) then v = "[masked]"; break end
    end
    if type(v) == "string" and #v > 200 then v = v:sub(1, 200) .. "..." end
    if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" and v ~= NULL then
      v = tostring(v)
    end
    out[k] = v
  end
  return out
end
M.sample = sample

local function to_json(v)
  if v == nil then return nil end
  local json = require("weir.json")
  local ok, s = pcall(json.encode, v)
  return ok and s or json.encode(tostring(v))
end

-- The stored form of a result: observed and samples as JSON text.
local function finish(c, r)
  r.name, r.check, r.severity = c.name or M.default_name(c), c.check, c.severity or "fail"
  if r.status == "fail" and r.severity == "warn" then r.status = "warn" end
  r.observed = to_json(r.observed)
  if r.samples and #r.samples > 0 then
    local rows = {}
    for i = 1, math.min(#r.samples, M.SAMPLES) do rows[i] = sample(r.samples[i]) end
    r.samples = to_json(setmetatable(rows, require("weir.json").array_mt))
  else
    r.samples = nil
  end
  return r
end

local function failed(n, what)
  if n > 0 then return "fail", format("%d %s", n, what) end
  return "pass", nil
end

-- The verdict of a row_count, not_null, ..., from what was observed.
local function judge(c, obs, now_s)
  local k = c.check
  if k == "row_count" then
    if c.min and obs < c.min then return "fail", format("%d rows, fewer than %s", obs, c.min) end
    if c.max and obs > c.max then return "fail", format("%d rows, more than %s", obs, c.max) end
    return "pass"
  elseif k == "not_null" then return failed(obs, "row(s) with a null")
  elseif k == "unique" then return failed(obs, "row(s) repeat a value of an earlier row")
  elseif k == "accepted_values" then return failed(obs, "row(s) with a value not accepted")
  elseif k == "range" then return failed(obs, "row(s) out of range")
  elseif k == "pattern" then return failed(obs, "row(s) not matching the pattern")
  elseif k == "relationship" then return failed(obs, "row(s) with no match in " .. c.to)
  elseif k == "freshness" then
    if obs == nil then return "fail", "no value (empty, or not a time)" end
    local age = now_s - obs
    if age > util.duration(c.max_age) then
      return "fail", format("newest value is %s old, more than %s", util.human_duration(age),
                            tostring(c.max_age))
    end
    return "pass"
  end
end

-- tables ----------------------------------------------------------------

-- A table to check: T.dialect ("sqlite" or "pg"), T.all(sql, params) ->
-- rows (raises), T.rows(sql, params, fn) calls fn(row) for every row of
-- a query (constant memory), T.q (quote an identifier), T.tbl (the
-- table, quoted), T.qualified (a "schema.table" name quoted), T.name.

-- Bound parameters in the order their placeholders appear.
local function params_of(T)
  local P = { n = 0 }
  function P.add(v)
    P.n = P.n + 1
    P[P.n] = v
    return T.dialect == "pg" and "$" .. P.n or "?"
  end
  return P
end

-- The condition a failing row meets, for a check of the one scan.
local function condition(T, c, P)
  local q = T.q
  local k = c.check
  if k == "not_null" then
    local parts = {}
    for i, col in ipairs(columns_of(c)) do parts[i] = q(col) .. " IS NULL" end
    return "(" .. concat(parts, " OR ") .. ")"
  elseif k == "accepted_values" then
    local ph = {}
    for i, v in ipairs(c.values) do ph[i] = P.add(v) end
    return format("(%s IS NOT NULL AND %s NOT IN (%s))", q(c.column), q(c.column), concat(ph, ", "))
  elseif k == "range" then
    local parts = {}
    if c.min ~= nil then parts[#parts + 1] = q(c.column) .. " < " .. P.add(c.min) end
    if c.max ~= nil then parts[#parts + 1] = q(c.column) .. " > " .. P.add(c.max) end
    return "(" .. concat(parts, " OR ") .. ")"
  elseif k == "pattern" then
    return format("(%s IS NOT NULL AND NOT (CAST(%s AS text) ~ %s))", q(c.column), q(c.column),
                  P.add(c.pattern))
  end
end

-- The aggregate of a check of the one scan, or nil when it needs a query
-- (or a pass) of its own.
local function aggregate(T, c, P)
  local k, q = c.check, T.q
  if k == "row_count" then return "count(*)" end
  if k == "unique" then
    local cols = columns_of(c)
    if #cols ~= 1 then return nil end
    return format("count(%s) - count(DISTINCT %s)", q(cols[1]), q(cols[1]))
  end
  if k == "freshness" then
    if T.dialect == "pg" then
      return format("CAST(extract(epoch FROM max(%s)) AS float8)", q(c.column))
    end
    -- numbers are seconds since 1970; text an ISO 8601 time
    return format("CASE WHEN typeof(max(%s)) IN ('integer', 'real') THEN max(%s) "
                  .. "ELSE (julianday(max(%s)) - 2440587.5) * 86400.0 END",
                  q(c.column), q(c.column), q(c.column))
  end
  if k == "pattern" and T.dialect ~= "pg" then return nil end
  local cond = condition(T, c, P)
  if not cond then return nil end
  return "count(*) FILTER (WHERE " .. cond .. ")"
end

local function split_to(to)
  local tbl, col = to:match("^(.+)%.([^.]+)$")
  return tbl, col
end

-- Sample rows of a failing check of the one scan or a query of its own.
local function samples_of(T, c)
  local q, k, n = T.q, c.check, M.SAMPLES
  if k == "unique" then
    local cols = {}
    for i, col in ipairs(columns_of(c)) do cols[i] = q(col) end
    local list = concat(cols, ", ")
    local nn = {}
    for i, col in ipairs(cols) do nn[i] = col .. " IS NOT NULL" end
    return T.all(format("SELECT %s, count(*) AS weir_rows FROM %s WHERE %s GROUP BY %s "
                        .. "HAVING count(*) > 1 LIMIT %d", list, T.tbl, concat(nn, " AND "),
                        list, n))
  elseif k == "relationship" then
    local ptbl, pcol = split_to(c.to)
    return T.all(format("SELECT weir_c.* FROM %s AS weir_c WHERE weir_c.%s IS NOT NULL AND NOT "
                        .. "EXISTS (SELECT 1 FROM %s AS weir_p WHERE weir_p.%s = weir_c.%s) "
                        .. "LIMIT %d", T.tbl, q(c.column), T.qualified(ptbl), q(pcol),
                        q(c.column), n))
  end
  local P = params_of(T)
  local cond = condition(T, c, P)
  if not cond then return nil end
  return T.all(format("SELECT * FROM %s WHERE %s LIMIT %d", T.tbl, cond, n), P)
end

-- The value of a one-column row (a count, a sql check's answer).
local function first_value(rows)
  local r = rows[1]
  if not r then return nil end
  local _, v = next(r)
  return v
end

-- A check that needs a query of its own (or a pass): its result.
local function run_alone(T, c)
  local q, k = T.q, c.check
  if k == "unique" then
    local cols = {}
    for i, col in ipairs(columns_of(c)) do cols[i] = q(col) end
    local nn = {}
    for i, col in ipairs(cols) do nn[i] = col .. " IS NOT NULL" end
    local list = concat(cols, ", ")
    local rows = T.all(format("SELECT coalesce(sum(n - 1), 0) AS n FROM (SELECT count(*) AS n "
                              .. "FROM %s WHERE %s GROUP BY %s HAVING count(*) > 1) AS d",
                              T.tbl, concat(nn, " AND "), list))
    return { observed = tonumber(first_value(rows)) or 0 }
  elseif k == "relationship" then
    local ptbl, pcol = split_to(c.to)
    local rows = T.all(format("SELECT count(*) AS n FROM %s AS weir_c WHERE weir_c.%s IS NOT "
                              .. "NULL AND NOT EXISTS (SELECT 1 FROM %s AS weir_p WHERE "
                              .. "weir_p.%s = weir_c.%s)", T.tbl, q(c.column),
                              T.qualified(ptbl), q(pcol), q(c.column)))
    return { observed = tonumber(first_value(rows)) or 0 }
  elseif k == "pattern" then
    -- SQLite: one pass over the column's values here, weir.regex matching
    local re = regex(c.pattern)
    local bad, rows = 0, {}
    T.rows(format("SELECT * FROM %s WHERE %s IS NOT NULL", T.tbl, q(c.column)), nil, function(r)
      if not re:test(tostring(r[c.column])) then
        bad = bad + 1
        if #rows < M.SAMPLES then rows[#rows + 1] = r end
      end
    end)
    return { observed = bad, samples = rows }
  elseif k == "sql" then
    local params = c.params
    if params then params = { n = #params, unpack(params) } end
    local rows = T.all(c.query, params)
    if c.expect ~= nil then
      local v = first_value(rows)
      if tonumber(v) and tonumber(c.expect) then v = tonumber(v) end
      if v ~= c.expect then
        return { observed = v, status = "fail",
                 message = format("got %s, expected %s", util.show(v), util.show(c.expect)) }
      end
      return { observed = v, status = "pass" }
    end
    -- no expect: the query returns the failing rows
    if #rows > 0 then
      return { observed = #rows, status = "fail", samples = rows,
               message = format("the query returned %d row(s)", #rows) }
    end
    return { observed = 0, status = "pass" }
  end
  error("weir.checks: " .. tostring(k) .. " has no query of its own", 0)
end

-- Run checks (cheap ones first, together) on table T; returns results.
local function on_table(T, list, now_s, custom)
  local results = {}
  local scan, P, exprs = {}, params_of(T), {}
  for i, c in ipairs(list) do
    if c.check ~= "custom" and c.check ~= "sql" then
      local before = P.n
      local ok, agg = pcall(aggregate, T, c, P)
      if not ok then
        -- (a bad name, say) its parameters go: the next ones keep their numbers
        for j = before + 1, P.n do P[j] = nil end
        P.n = before
        results[i] = { status = "error", message = tostring(agg) }
      elseif agg then
        scan[#scan + 1] = i
        exprs[#exprs + 1] = agg .. " AS weir_c" .. i
      end
    end
  end
  local row
  if #scan > 0 then
    local ok, rows = pcall(T.all, "SELECT " .. concat(exprs, ", ") .. " FROM " .. T.tbl, P)
    if ok then
      row = rows[1]
    elseif #scan == 1 then
      results[scan[1]] = { status = "error", message = tostring(rows) }
      scan = {}
    else
      -- one of them cannot run (a missing column, a type without max):
      -- each on its own says which
      for _, i in ipairs(scan) do
        local P1 = params_of(T)
        local ok1, r1 = pcall(function()
          return T.all("SELECT " .. aggregate(T, list[i], P1) .. " AS weir_c" .. i
                       .. " FROM " .. T.tbl, P1)
        end)
        if ok1 then
          row = row or {}
          row["weir_c" .. i] = r1[1] and r1[1]["weir_c" .. i]
        else
          results[i] = { status = "error", message = tostring(r1) }
        end
      end
    end
  end
  for _, i in ipairs(scan) do
    if not results[i] then
      local c = list[i]
      local v = row and row["weir_c" .. i]
      local obs = not is_null(v) and tonumber(v) or (c.check ~= "freshness" and 0 or nil)
      local status, message = judge(c, obs, now_s)
      local r = { observed = obs, status = status, message = message }
      if c.check == "freshness" and obs then r.observed = util.human_duration(now_s - obs) end
      if status == "fail" and c.check ~= "row_count" and c.check ~= "freshness" then
        local okS, s = pcall(samples_of, T, c)
        if okS then r.samples = s end
      end
      results[i] = r
    end
  end
  for i, c in ipairs(list) do
    if not results[i] then
      local ok, r = pcall(function()
        if c.check == "custom" then return custom(c) end
        local res = run_alone(T, c)
        if not res.status then
          res.status, res.message = judge(c, res.observed, now_s)
          if res.status == "fail" and not res.samples then
            local okS, s = pcall(samples_of, T, c)
            if okS then res.samples = s end
          end
        end
        return res
      end)
      results[i] = ok and r or { status = "error", message = tostring(r) }
    end
  end
  return results
end

-- files -----------------------------------------------------------------

-- Seconds since 1970 of an ISO 8601 text ("2026-12-07", "2026-12-07 08:00",
-- "...T08:00:00.5Z", "+01:00"), or of a number; nil when it is neither.
local function epoch(v)
  if type(v) == "number" then return v end
  if type(v) ~= "string" then return nil end
  local y, mo, d, rest = v:match("^(%d%d%d%d)-(%d%d)-(%d%d)(.*)$")
  if not y then return tonumber(v) end
  local h, mi, s, tail = rest:match("^[T ](%d%d):(%d%d):?([%d%.]*)(.*)$")
  local off = 0
  if tail then
    local sign, oh, om = tail:match("^([+-])(%d%d):?(%d%d)$")
    if sign then
      off = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
    elseif tail ~= "" and tail ~= "Z" then
      return nil
    end
  elseif rest ~= "" then
    return nil
  end
  local days = require("weir.tz").days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  return days * 86400 + (tonumber(h) or 0) * 3600 + (tonumber(mi) or 0) * 60
         + (tonumber(s) or 0) - off
end
M.epoch = epoch

-- A CSV field is text: empty is null, numbers compare as numbers.
local function value(v, csv)
  if csv and v == "" then return nil end
  if is_null(v) then return nil end
  return v
end

-- Run checks over a file in one pass: each(fn) streams its rows.
local function on_file(each, csv, list, now_s, custom)
  local results, live = {}, {}
  for i, c in ipairs(list) do
    if c.check == "relationship" or c.check == "sql" then
      results[i] = { status = "error", message = c.check .. " runs on a table, not on a file" }
    elseif c.check ~= "custom" then
      local st = { bad = 0, samples = {}, seen = {} }
      if c.check == "pattern" then st.re = regex(c.pattern) end
      if c.check == "accepted_values" then
        st.ok = {}
        for _, v in ipairs(c.values) do st.ok[tostring(v)] = true end
      end
      live[#live + 1] = { i = i, c = c, st = st }
    end
  end
  local count = 0
  local function bad(st, row)
    st.bad = st.bad + 1
    if #st.samples < M.SAMPLES then st.samples[#st.samples + 1] = row end
  end
  if #live > 0 then
    each(function(row)
      count = count + 1
      for _, L in ipairs(live) do
        local c, st = L.c, L.st
        local k = c.check
        if k == "not_null" then
          for _, col in ipairs(columns_of(c)) do
            if value(row[col], csv) == nil then bad(st, row); break end
          end
        elseif k == "unique" then
          local parts, any_null = {}, false
          for j, col in ipairs(columns_of(c)) do
            local v = value(row[col], csv)
            if v == nil then any_null = true end
            parts[j] = tostring(v)
          end
          if not any_null then
            local key = concat(parts, "\0")
            if st.seen[key] then bad(st, row) else st.seen[key] = true end
          end
        elseif k == "accepted_values" then
          local v = value(row[c.column], csv)
          if v ~= nil and not st.ok[tostring(v)] then bad(st, row) end
        elseif k == "range" then
          local v = value(row[c.column], csv)
          if v ~= nil then
            local n = tonumber(v)
            if type(c.min) == "string" or type(c.max) == "string" then n = tostring(v) end
            if n == nil or (c.min ~= nil and n < c.min) or (c.max ~= nil and n > c.max) then
              bad(st, row)
            end
          end
        elseif k == "pattern" then
          local v = value(row[c.column], csv)
          if v ~= nil and not st.re:test(tostring(v)) then bad(st, row) end
        elseif k == "freshness" then
          local t = epoch(value(row[c.column], csv))
          if t and (not st.max or t > st.max) then st.max = t end
        end
      end
    end)
  end
  for _, L in ipairs(live) do
    local c, st = L.c, L.st
    local obs = c.check == "row_count" and count or c.check == "freshness" and st.max or st.bad
    local status, message = judge(c, obs, now_s)
    local r = { observed = obs, status = status, message = message }
    if c.check == "freshness" and obs then r.observed = util.human_duration(now_s - obs) end
    if status == "fail" then r.samples = st.samples end
    results[L.i] = r
  end
  for i, c in ipairs(list) do
    if c.check == "custom" then
      local ok, r = pcall(custom, c)
      results[i] = ok and r or { status = "error", message = tostring(r) }
    end
  end
  return results
end

-- running -----------------------------------------------------------------

-- What a custom check returned, as a result.
local function custom_result(ret, extra)
  local t = type(ret)
  if ret == true then return { status = "pass" } end
  if ret == false then return { status = "fail", observed = extra, message = extra ~= nil
                                and util.show(extra) or nil } end
  if t == "number" then return { observed = ret, status = ret == 0 and "pass" or "fail",
                                 message = ret ~= 0 and format("%d failing row(s)", ret) or nil } end
  if t == "table" and type(ret.ok) == "boolean" then
    local samples = type(ret.samples) == "table" and ret.samples or nil
    return { status = ret.ok and "pass" or "fail", observed = ret.observed,
             message = ret.message ~= nil and tostring(ret.message) or nil, samples = samples }
  end
  error("a custom check returns true, false, a number of failing rows or { ok = ... }, not "
        .. util.show(ret), 0)
end

--- Run the checks in list on dataset D: { kind = "sqlite"|"pg"|"csv"|
-- "jsonl", name (shown), and T (a table, above) or each (a file's rows) },
-- obj (what a custom check gets as dataset.db). call(c, dataset) runs a
-- custom check's function (the attempt knows how). Returns the results.
function M.run(D, list, call)
  local now_s = require("weir._native").now() / 1000
  local dataset = D.kind ~= "none" and { kind = D.kind, name = D.name, table = D.table,
                                         path = D.path, db = D.obj, rows = D.stream } or nil
  local function custom(c)
    return custom_result(call(c, dataset))
  end
  local raw
  if D.T then
    raw = on_table(D.T, list, now_s, custom)
  else
    raw = on_file(D.each, D.kind == "csv", list, now_s, custom)
  end
  local out = {}
  for i, c in ipairs(list) do
    local r = finish(c, raw[i])
    r.dataset = D.name
    out[i] = r
  end
  return out
end

-- The key of a dataset spec, so two checks of one dataset share its pass.
local function dataset_key(d)
  return concat({ d.sqlite or "", d.connection or "", d.csv or "", d.jsonl or "",
                  d.table or "" }, "\0")
end

--- Run a task's declared checks (job.checks) after it succeeded. X: the
-- attempt's connector functions (X.dataset, X.attempt.written); call(c,
-- dataset): a custom check's function called. Returns the results in the
-- declared order.
function M.declared(list, X, call)
  local written, seen = {}, {}
  for _, w in ipairs(X.attempt.written) do
    local k = dataset_key(w)
    if not seen[k] then seen[k] = true; written[#written + 1] = w end
  end
  local groups, order = {}, {}
  local out = {}
  for i, c in ipairs(list) do
    c._i = i
    local d = c.dataset
    local key
    if type(d) == "table" then
      key = dataset_key(d)
    elseif #written == 1 then
      d, key = written[1], dataset_key(written[1])
    elseif #written == 0 and c.check == "custom" then
      -- a custom check may be about no dataset at all (an API, a count
      -- elsewhere): it gets none
      key = "\0none"
    else
      local names = {}
      for j, w in ipairs(written) do names[j] = w.shown end
      out[i] = finish(c, { status = "error", message = #written == 0
        and "the task wrote no table or file: name the dataset to check (dataset = { ... })"
        or format("the task wrote %d datasets (%s): name the one to check (dataset = { ... })",
                  #written, concat(names, ", ")) })
    end
    if key then
      if not groups[key] then groups[key] = { d = d, list = {} }; order[#order + 1] = key end
      local g = groups[key].list
      g[#g + 1] = c
    end
  end
  for _, key in ipairs(order) do
    local g = groups[key]
    local ok, D
    if g.d then
      ok, D = pcall(X.dataset, g.d)
    else
      ok, D = true, { kind = "none", each = function() end }
    end
    local res
    if ok then
      res = M.run(D, g.list, call)
    else
      res = {}
      for j, c in ipairs(g.list) do
        res[j] = finish(c, { status = "error", message = require("weir.sandbox").describe_error(D) })
      end
    end
    for j, c in ipairs(g.list) do out[c._i] = res[j] end
  end
  for _, c in ipairs(list) do c._i = nil end
  return out
end

--- The checks of ctx.check(db, table, rules): rules is a list of checks
-- ({ { "not_null", column = "id" }, ... }) or, as before checks could be
-- declared, a table { row_count = { min, max }, not_null = { cols },
-- unique = { cols } }. Returns the list, or nil and what is wrong.
function M.from_rules(rules)
  if type(rules) ~= "table" then return nil, "bad 'rules' (a list of checks expected)" end
  local list = {}
  if rules[1] == nil and next(rules) ~= nil then
    for k in pairs(rules) do
      if k ~= "row_count" and k ~= "not_null" and k ~= "unique" then
        return nil, format("unknown rule %s (row_count, not_null, unique; or a list of checks)",
                           tostring(k))
      end
    end
    local rc = rules.row_count or {}
    list[1] = { check = "row_count", min = rc.min or 0, max = rc.max }
    for _, kind in ipairs({ "not_null", "unique" }) do
      for _, col in ipairs(rules[kind] or {}) do
        list[#list + 1] = { check = kind, column = col }
      end
    end
  else
    for i, c in ipairs(rules) do
      if type(c) ~= "table" then return nil, format("check %d: a table expected", i) end
      local copy = {}
      for k, v in pairs(c) do copy[k] = v end
      list[i] = copy
    end
    M.normalize(list)
  end
  local errs = {}
  for i, c in ipairs(list) do
    if not M.KINDS[c.check] then
      errs[#errs + 1] = format("[%d]: unknown check %s", i, tostring(c.check))
    elseif c.severity ~= nil and c.severity ~= "fail" and c.severity ~= "warn" then
      errs[#errs + 1] = format("[%d].severity: fail or warn", i)
    elseif c.dataset ~= nil then
      errs[#errs + 1] = format("[%d].dataset: ctx.check checks the table it is given", i)
    end
  end
  M.validate(list, "", function(p, m) errs[#errs + 1] = p .. ": " .. m end)
  if #errs > 0 then return nil, concat(errs, "; ") end
  return list
end

--- The line that says why checks failed a task, or nil when none did.
function M.failure(results)
  local bad = {}
  for _, r in ipairs(results) do
    if (r.status == "fail" or r.status == "error") and r.severity ~= "warn" then
      bad[#bad + 1] = format("%s%s%s", r.name, r.status == "error" and " could not run" or "",
                             r.message and (": " .. r.message) or "")
    end
  end
  if #bad == 0 then return nil end
  return concat(bad, "; ")
end

--- Whether a failure is only of checks that ran and failed (no retry can
-- change their verdict: the data is committed and a retry does not load
-- it again), not of a check that could not run.
function M.final(results)
  for _, r in ipairs(results) do
    if r.status == "error" and r.severity ~= "warn" then return false end
  end
  return true
end

return M
