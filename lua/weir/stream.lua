-- weir.stream: pull-based streams of row batches: the stream algebra and
-- the dispatch of a stream to its sink. Sources and sinks are the
-- connectors' (lua/weir/connectors/): they depend on this module, never the
-- reverse.
--
-- A stream pulls one batch (an array of row tables) at a time from its
-- upstream, so memory stays constant whatever the row count and a slow
-- sink slows the source. User code only ever holds opaque stream and
-- connector objects: their state lives in a private weak table, so no
-- cdata or trusted upvalue is reachable from the sandbox.
local type, pairs, ipairs, pcall, error, setmetatable =
  type, pairs, ipairs, pcall, error, setmetatable
local sort = table.sort

local M = {}

M.BATCH = 1000

--- Progress hook: the attempt sets it (weir._attempt); every batch a
-- sink or a drain takes calls M.pulse(n) with its row count. It must be
-- cheap: it only looks at the clock and, at most about once a second,
-- reports progress.
function M.pulse() end
local priv = setmetatable({}, { __mode = "k" })
local Stream = {}
local stream_mt = { __index = Stream, __metatable = false }

-- How a misuse error names each kind of object: its method prefix, what
-- it is, how it is called. Connectors add theirs (M.kind).
local KINDS = { stream = { "weir.stream.", "a stream", "s:" } }

--- Declare a kind of object a connector hands to user code, for misuse
-- errors: kind "pg", prefix "weir.postgres.", what "a PostgreSQL
-- connection", call "db:".
function M.kind(kind, prefix, what, call)
  KINDS[kind] = { prefix, what, call }
end

-- The private state of an object handed to user code, or a misuse error
-- that blames the user's line (callers tail-call this, so level 3 is the
-- caller of the stream or object method).
local function owned(x, kind, what)
  local p = priv[x]
  if not p or p.kind ~= kind then
    local k = KINDS[kind]
    error(k[1] .. what .. ": expected " .. k[2] .. " (call it as " .. k[3] .. what .. "(...))", 3)
  end
  return p
end
M.owned = owned

local function S(s, what) return owned(s, "stream", what) end

--- A stream over pull (a function returning a batch or nil at the end);
-- columns (optional) their order; shared: what the stream's descendants
-- share with it (dl: the source's dead-letter sink).
local function new_stream(pull, columns, shared)
  local s = setmetatable({}, stream_mt)
  priv[s] = { kind = "stream", pull = pull, columns = columns, shared = shared }
  return s
end
M.new_stream = new_stream

--- An opaque object of a connector for user code: methods (its index)
-- and its private state.
function M.new_object(kind, methods, state)
  local x = setmetatable({}, { __index = methods, __metatable = false })
  state.kind = kind
  priv[x] = state
  return x
end

--- The private state behind an object (nil when x is not one).
function M.state(x) return priv[x] end

--- The sink of each kind of object: M.sinks[kind](stream_state,
-- target_state, ...) loads a stream into it (s:into(target, ...)).
M.sinks = {}

-- A sink's view of stream state p: its pull reports each batch to
-- M.pulse (rows written so far, live); the sink's result gets the count
-- of rows the source sent to its dead-letter file.
local function sinking(p)
  local up = p.pull
  p.pull = function()
    local b = up()
    if b then M.pulse(#b) end
    return b
  end
  return p
end

local function with_rejected(p, res, ...)
  local dls = p.shared and p.shared.dl_state
  if type(res) == "table" and dls and res.rejected == nil then res.rejected = dls.count end
  return res, ...
end

--- A stream method a connector adds (the file connector's to_csv and
-- to_jsonl): fn(stream_state, ...) with the stream's private state.
function M.method(name, fn)
  Stream[name] = function(s, ...)
    local p = sinking(S(s, name))
    return with_rejected(p, fn(p, ...))
  end
end

-- stream operators ----------------------------------------------------

-- A per-row operator: fn runs on every row under pcall; keep(row, result)
-- says what goes downstream (nil drops the row). A raising fn fails the
-- task, or sends the row to the dead-letter file if the source has one.
local function row_op(s, what, fn, keep)
  local p = S(s, what)
  if type(fn) ~= "function" then
    error("weir.stream." .. what .. ": bad 'fn' (function expected)", 3)
  end
  local up, dl = p.pull, p.shared.dl
  local describe = require("weir.sandbox").describe_error
  return new_stream(function()
    while true do
      local batch = up()
      if not batch then return nil end
      local out, n = {}, 0
      for i = 1, #batch do
        local row = batch[i]
        local ok, r = pcall(fn, row)
        if ok then
          r = keep(row, r)
          if r ~= nil then n = n + 1; out[n] = r end
        elseif dl then
          dl(nil, what .. ": " .. describe(r), row, false)
        else
          error(what .. ": " .. describe(r), 0)
        end
      end
      if n > 0 then return out end
    end
  end, p.columns, p.shared)
end

local function keep_result(_, r) return r end
local function keep_row_if(row, r) if r then return row end end

--- s:map(fn): fn(row) returns the new row, or nil to drop it. A raising
-- fn fails the task, or sends the row to the dead-letter file if the
-- source has one.
function Stream.map(s, fn) return row_op(s, "map", fn, keep_result) end

--- s:filter(fn): keep rows for which fn(row) is truthy.
function Stream.filter(s, fn) return row_op(s, "filter", fn, keep_row_if) end

-- A trusted per-row rewrite (f cannot raise on a row): batch by batch.
local function each_row(p, cols, f)
  local up = p.pull
  return new_stream(function()
    local batch = up()
    if not batch then return nil end
    for i = 1, #batch do batch[i] = f(batch[i]) end
    return batch
  end, cols, p.shared)
end

--- s:select(col, ...) or s:select({cols}): keep only these columns.
function Stream.select(s, first, ...)
  local p = S(s, "select")
  local cols = type(first) == "table" and first or { first, ... }
  for i, c in ipairs(cols) do
    if type(c) ~= "string" then error("weir.stream.select: bad column " .. i, 2) end
  end
  return each_row(p, cols, function(r)
    local o = {}
    for _, c in ipairs(cols) do o[c] = r[c] end
    return o
  end)
end

--- s:rename({ old = "new", ... }).
function Stream.rename(s, map)
  local p = S(s, "rename")
  if type(map) ~= "table" then error("weir.stream.rename: bad 'map' (table expected)", 2) end
  local cols
  if p.columns then
    cols = {}
    for i, c in ipairs(p.columns) do cols[i] = map[c] or c end
  end
  return each_row(p, cols, function(r)
    for old, new in pairs(map) do
      if r[old] ~= nil then r[new] = r[old]; r[old] = nil end
    end
    return r
  end)
end

--- s:batch(n): re-chunk into batches of n rows (sinks write per batch).
function Stream.batch(s, size)
  local p = S(s, "batch")
  if type(size) ~= "number" or size < 1 then error("weir.stream.batch: bad size", 2) end
  local up, carry = p.pull, {}
  local done = false
  return new_stream(function()
    while #carry < size and not done do
      local b = up()
      if not b then done = true else for i = 1, #b do carry[#carry + 1] = b[i] end end
    end
    if #carry == 0 then return nil end
    local out = {}
    for i = 1, math.min(size, #carry) do out[i] = carry[i] end
    local rest = {}
    for i = size + 1, #carry do rest[#rest + 1] = carry[i] end
    carry = rest
    return out
  end, p.columns, p.shared)
end

--- s:each(fn): call fn(row) for every row; returns the row count.
function Stream.each(s, fn)
  local p = S(s, "each")
  local n = 0
  local pulse = M.pulse
  while true do
    local b = p.pull()
    if not b then return n end
    for i = 1, #b do fn(b[i]); n = n + 1 end
    pulse(0)
  end
end

--- s:count(): drain the stream and count its rows.
function Stream.count(s)
  return Stream.each(s, function() end)
end

--- s:collect(limit): all rows as an array (at most limit, default 10000).
function Stream.collect(s, limit)
  local p = S(s, "collect")
  limit = limit or 10000
  local out = {}
  local pulse = M.pulse
  while true do
    local b = p.pull()
    if not b then return out end
    pulse(0)
    for i = 1, #b do
      if #out >= limit then error("weir.stream.collect: more than " .. limit .. " rows", 2) end
      out[#out + 1] = b[i]
    end
  end
end

local function sink_columns(p, batch)
  local seen, cols = {}, {}
  for _, c in ipairs(p.columns or {}) do
    if not seen[c] then seen[c] = true; cols[#cols + 1] = c end
  end
  local extra = {}
  for i = 1, math.min(#batch, 100) do
    for k in pairs(batch[i]) do
      if type(k) == "string" and not seen[k] then seen[k] = true; extra[#extra + 1] = k end
    end
  end
  sort(extra)
  for _, c in ipairs(extra) do cols[#cols + 1] = c end
  return cols
end
M.sink_columns = sink_columns

--- s:into(target, ...): load the stream into a connector's object (a
-- SQLite database, a PostgreSQL connection, a Redis connection): the
-- sink of the object's kind does it.
function Stream.into(s, target, ...)
  local p = S(s, "into")
  local dp = priv[target]
  local sink = dp and M.sinks[dp.kind]
  if not sink then
    error("weir.stream.into: bad 'target' (a database or connection from ctx expected)", 2)
  end
  return with_rejected(p, sink(sinking(p), dp, ...))
end

return M
