-- weir.stream: pull-based streams of row batches, and the file and SQLite
-- connectors that start and end them.
--
-- A stream pulls one batch (an array of row tables) at a time from its
-- upstream, so memory stays constant whatever the row count and a slow
-- sink slows the source. User code only ever holds opaque stream and
-- database objects: their state lives in a private weak table, so no
-- cdata or trusted upvalue is reachable from the sandbox. Every file goes
-- through weir_ffi_file_open (the broker in workers: confined to roots).
local F = require("weir._ffi")
local ffi, C = F.ffi, F.C
local util = require("weir.util")
local dbm = require("weir.db")
local native = require("weir._native")
local NULL = native.NULL -- SQL NULL in rows: ctx.NULL
local type, pairs, ipairs, pcall, error, tostring, tonumber, setmetatable =
  type, pairs, ipairs, pcall, error, tostring, tonumber, setmetatable
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

local BATCH = 1000
local priv = setmetatable({}, { __mode = "k" })
local Stream = {}
local stream_mt = { __index = Stream, __metatable = false }
local Db = {}
local db_mt = { __index = Db, __metatable = false }

local O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_APPEND, O_CLOEXEC, O_TEMP =
  C.WEIR_O_RDONLY, C.WEIR_O_WRONLY, C.WEIR_O_CREAT, C.WEIR_O_EXCL, C.WEIR_O_APPEND,
  C.WEIR_O_CLOEXEC, C.WEIR_O_TEMP
local fdp = ffi.new("int32_t[1]")
local nread = ffi.new("int64_t[1]")

-- The private state of an object handed to user code, or a misuse error
-- that blames the user's line (S and D tail-call this, so level 3 is the
-- caller of the stream or database method).
local KINDS = { stream = { "weir.stream.", "a stream", "s:" },
                db = { "weir.sqlite.", "a database", "db:" },
                pg = { "weir.postgres.", "a PostgreSQL connection", "db:" },
                redis = { "weir.redis.", "a Redis connection", "r:" } }
local function owned(x, kind, what)
  local p = priv[x]
  if not p or p.kind ~= kind then
    local k = KINDS[kind]
    error(k[1] .. what .. ": expected " .. k[2] .. " (call it as " .. k[3] .. what .. "(...))", 3)
  end
  return p
end

local function S(s, what) return owned(s, "stream", what) end

local function new_stream(pull, columns, shared)
  local s = setmetatable({}, stream_mt)
  priv[s] = { kind = "stream", pull = pull, columns = columns, shared = shared }
  return s
end

-- For the connector modules (weir.pg, weir.redis): streams they start,
-- opaque objects they hand to user code, the private state behind such an
-- object (a misuse error blames the user's line), and the sink each kind
-- of object loads a stream into (M.sinks[kind](stream_state, target_state,
-- table, opts)).
M.new_stream = new_stream
function M.new_object(kind, methods, state)
  local x = setmetatable({}, { __index = methods, __metatable = false })
  state.kind = kind
  priv[x] = state
  return x
end
M.owned = owned
M.sinks = {}

--- The connector functions of one attempt (called by weir._ctx).
function M.context(job, stats, opened, log)
  local X = {}
  local roots = {}
  for i, r in ipairs(job.roots or {}) do roots[i] = util.normalize(r) end
  local base = job.base_dir or "/"
  local load_seq = 0

  function X.path(p)
    if type(p) ~= "string" or p == "" then error("ctx.path: bad path (string expected)", 3) end
    local abs = util.normalize(util.join(base, p))
    for _, r in ipairs(roots) do
      if abs == r or abs:sub(1, #r + 1) == r .. "/" then return abs end
    end
    error(format("path %q is outside the allowed roots", p), 3)
  end

  local function open_fd(abs, flags, shown)
    local rc = C.weir_ffi_file_open(abs, flags, 420, fdp, F.errbuf, F.errlen)
    if rc ~= 0 then error(format("%s: %s", shown, F.errmsg()), 0) end
    return fdp[0]
  end

  local function mkdirs(abs)
    local dir = util.dirname(abs)
    local parts, acc = {}, ""
    for part in dir:gmatch("[^/]+") do parts[#parts + 1] = part end
    for _, part in ipairs(parts) do
      acc = acc .. "/" .. part
      local ok = false
      for _, r in ipairs(roots) do
        if #acc > #r and acc:sub(1, #r + 1) == r .. "/" then ok = true end
      end
      if ok then C.weir_ffi_file_mkdir(acc, F.errbuf, F.errlen) end
    end
  end

  -- A file written to a temporary name and renamed into place on commit,
  -- so readers never see half a file and a failed attempt leaves none.
  local function atomic_writer(p)
    local abs = X.path(p)
    mkdirs(abs)
    local tmp = format("%s.tmp-%s-%d", abs, tostring(job.task), job.attempt or 0)
    -- created new (a leftover of an earlier run goes first): the
    -- supervisor removes it when the run ends if this attempt is killed
    -- before renaming it (WEIR_O_TEMP)
    C.weir_ffi_file_unlink(tmp, F.errbuf, F.errlen)
    local fd = open_fd(tmp, O_WRONLY + O_CREAT + O_EXCL + O_CLOEXEC + O_TEMP, p)
    local w = { fd = fd, parts = {}, n = 0, size = 0 }
    local function flush()
      if w.n == 0 then return end
      local s = concat(w.parts, "", 1, w.n)
      w.n, w.size = 0, 0
      if C.weir_ffi_file_write(w.fd, s, #s, F.errbuf, F.errlen) ~= 0 then
        error(p .. ": " .. F.errmsg(), 0)
      end
    end
    function w.write(s)
      w.n = w.n + 1; w.parts[w.n] = s; w.size = w.size + #s
      if w.size > 262144 then flush() end
    end
    function w.commit()
      flush()
      if C.weir_ffi_file_fsync(w.fd, F.errbuf, F.errlen) ~= 0 then error(p .. ": " .. F.errmsg(), 0) end
      C.weir_ffi_file_close(w.fd); w.fd = nil
      if C.weir_ffi_file_rename(tmp, abs, F.errbuf, F.errlen) ~= 0 then
        error(p .. ": " .. F.errmsg(), 0)
      end
    end
    opened[#opened + 1] = function()
      if w.fd then
        C.weir_ffi_file_close(w.fd); w.fd = nil
        C.weir_ffi_file_unlink(tmp, F.errbuf, F.errlen)
      end
    end
    return w
  end

  -- Dead letters: bad rows with the reason, as JSON Lines, appended.
  local function dead_letter_sink(p, source)
    if not p then return nil end
    local cjson = require("cjson")
    local abs = X.path(p)
    local fd
    local count = 0
    opened[#opened + 1] = function() if fd then C.weir_ffi_file_close(fd); fd = nil end end
    return function(line, reason, row)
      if not fd then
        mkdirs(abs)
        fd = open_fd(abs, O_WRONLY + O_CREAT + O_APPEND + O_CLOEXEC, p)
      end
      count = count + 1
      local ok, s = pcall(cjson.encode, { source = source, line = line, reason = reason,
                                          row = row, run_id = job.run_id, task = job.task })
      if not ok then
        s = cjson.encode({ source = source, line = line, reason = reason })
      end
      s = s .. "\n"
      C.weir_ffi_file_write(fd, s, #s, F.errbuf, F.errlen)
      log(format("dead letter: %s: %s", source, reason))
    end
  end

  --- CSV source: header row gives the columns. opts: delimiter, quote,
  -- types = { col = "number"|"integer"|"boolean" }, dead_letter = path,
  -- max_row_bytes.
  function X.csv(p, opts)
    opts = opts or {}
    local abs = X.path(p)
    if opts.delimiter ~= nil and (type(opts.delimiter) ~= "string" or #opts.delimiter ~= 1) then
      error("ctx.csv: bad 'delimiter' (one character expected)", 3)
    end
    if opts.quote ~= nil and (type(opts.quote) ~= "string" or #opts.quote > 1) then
      error("ctx.csv: bad 'quote' (one character, or \"\" for none)", 3)
    end
    local delim = (opts.delimiter or ","):byte()
    local quote = (opts.quote or "\""):byte() or 0
    local fd = open_fd(abs, O_RDONLY + O_CLOEXEC, p)
    local out = ffi.new("weir_csv_reader *[1]")
    local rc = C.weir_ffi_csv_reader_new(fd, 1, delim, quote, opts.max_row_bytes or 1048576,
                                         out, F.errbuf, F.errlen)
    if rc ~= 0 then C.weir_ffi_file_close(fd); error(p .. ": " .. F.errmsg(), 0) end
    local r = ffi.gc(out[0], C.weir_ffi_csv_reader_delete)
    opened[#opened + 1] = function()
      if r then C.weir_ffi_csv_reader_delete(ffi.gc(r, nil)); r = nil end
    end
    local fields = ffi.new("const weir_csv_field *[1]")
    local nf = ffi.new("uint32_t[1]")
    local rawp = ffi.new("const char *[1]")
    local rawn = ffi.new("size_t[1]")
    local line = ffi.new("uint64_t[1]")
    local dl = dead_letter_sink(opts.dead_letter, p)
    local types = opts.types
    local header
    local function next_row()
      while true do
        local rc2 = C.weir_ffi_csv_next(r, fields, nf, line, F.errbuf, F.errlen)
        if rc2 == 0 then return true end
        if rc2 == C.WEIR_ENOENT then return false end
        local msg = F.errmsg()
        if dl and rc2 == C.WEIR_EPARSE then
          local raw
          if C.weir_ffi_csv_reader_raw(r, rawp, rawn) == 0 then
            raw = ffi.string(rawp[0], math.min(tonumber(rawn[0]), 65536))
          end
          dl(tonumber(line[0]), msg, raw)
        else
          error(format("%s: %s", p, msg), 0)
        end
      end
    end
    if not next_row() then error(p .. ": empty file (no header row)", 0) end
    header = {}
    for i = 0, nf[0] - 1 do
      local f = fields[0][i]
      header[i + 1] = ffi.string(f.data, f.len)
    end
    -- the rows of a batch are built in C (weir._native.csv_batch): one
    -- boundary crossing per batch instead of one per field
    local TYPE_CODES = { string = 0, number = 1, integer = 2, boolean = 3 }
    local codes
    if types then
      codes = {}
      for i, col in ipairs(header) do
        local t = types[col] or "string"
        codes[i] = TYPE_CODES[t]
        if not codes[i] then
          error(format("ctx.csv: bad type %q for column %s", tostring(t), col), 3)
        end
      end
    end
    local batch_fn = native.csv_batch
    local pull = function()
      while r do
        local rows, bad, eof = batch_fn(r, header, codes, BATCH)
        if bad then
          for _, b in ipairs(bad) do
            if dl then dl(b.line, b.reason, b.raw) else error(p .. ": " .. b.reason, 0) end
          end
        end
        if eof then C.weir_ffi_csv_reader_delete(ffi.gc(r, nil)); r = nil end
        if #rows > 0 then
          stats.rows_in = stats.rows_in + #rows
          return rows
        end
      end
      return nil
    end
    local s = new_stream(pull, header, { dl = dl, source = p })
    if not dl and not types then
      -- untouched (no operator applies to this very stream object), a CSV
      -- file can go to a database as it is: a PostgreSQL sink then sends
      -- the bytes to COPY ... (FORMAT csv) instead of rows
      priv[s].raw_csv = { name = p, header = header, delimiter = opts.delimiter or ",",
                          quote = opts.quote or "\"",
                          open = function() return open_fd(abs, O_RDONLY + O_CLOEXEC, p) end }
    end
    return s
  end

  --- JSON Lines source: one object per line. opts: dead_letter = path.
  function X.jsonl(p, opts)
    opts = opts or {}
    local cjson = require("cjson")
    local abs = X.path(p)
    local fd = open_fd(abs, O_RDONLY + O_CLOEXEC, p)
    opened[#opened + 1] = function() if fd then C.weir_ffi_file_close(fd); fd = nil end end
    local dl = dead_letter_sink(opts.dead_letter, p)
    local buf = ffi.new("char[?]", 65536)
    local pending, eof, lineno = "", false, 0
    local lines, li = {}, 1
    local function fill()
      while not eof and li > #lines do
        local rc = C.weir_ffi_file_read(fd, buf, 65536, nread, F.errbuf, F.errlen)
        if rc ~= 0 then error(p .. ": " .. F.errmsg(), 0) end
        local n = tonumber(nread[0])
        local chunk
        if n == 0 then
          eof = true
          chunk = pending
          pending = ""
          if chunk ~= "" then chunk = chunk .. "\n" end
        else
          chunk = pending .. ffi.string(buf, n)
          local last = chunk:match(".*()\n")
          if last then
            pending = chunk:sub(last + 1)
            chunk = chunk:sub(1, last)
          else
            pending, chunk = chunk, ""
          end
        end
        lines, li = {}, 1
        for l in chunk:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
      end
    end
    local pull = function()
      local batch, n = {}, 0
      while n < BATCH do
        fill()
        if li > #lines then break end
        local l = lines[li]
        li = li + 1
        lineno = lineno + 1
        if l:find("%S") then
          local ok, v = pcall(cjson.decode, l)
          if ok and type(v) == "table" and l:find("^%s*{") then
            for k, x in pairs(v) do if x == NULL then v[k] = nil end end
            n = n + 1
            batch[n] = v
          else
            local reason = format("line %d: %s", lineno,
                                  ok and "expected a JSON object" or tostring(v))
            if dl then dl(lineno, reason, l) else error(p .. ": " .. reason, 0) end
          end
        end
      end
      stats.rows_in = stats.rows_in + n
      if n == 0 then return nil end
      return batch
    end
    return new_stream(pull, nil, { dl = dl, source = p })
  end

  --- A stream over a Lua array of rows (small data, tests).
  function X.rows(list, opts)
    if type(list) ~= "table" then error("ctx.rows: expected an array of rows", 3) end
    local i, n = 1, #list
    local pull = function()
      if i > n then return nil end
      local batch = {}
      local last = math.min(n, i + BATCH - 1)
      for k = i, last do batch[#batch + 1] = list[k] end
      stats.rows_in = stats.rows_in + (last - i + 1)
      i = last + 1
      return batch
    end
    return new_stream(pull, opts and opts.columns, {})
  end

  --- A SQLite database inside the roots (created if missing).
  function X.sqlite(p, opts)
    opts = opts or {}
    local abs = X.path(p)
    mkdirs(abs)
    -- ask the broker first: its refusal says why (SQLite would only say
    -- "unable to open database file")
    local ex = ffi.new("int32_t[1]")
    if C.weir_ffi_file_exists(abs, ex, F.errbuf, F.errlen) ~= 0 then
      error(p .. ": " .. F.errmsg(), 0)
    end
    local handle, err = dbm.open(abs, { create = opts.create ~= false, readonly = opts.readonly,
                                        name = p })
    if not handle then error(tostring(err), 0) end
    handle:exec("PRAGMA temp_store=MEMORY")
    handle:exec("PRAGMA journal_mode=" .. (opts.wal and "WAL" or "DELETE"))
    opened[#opened + 1] = function() handle:close() end
    local d = setmetatable({}, db_mt)
    priv[d] = { kind = "db", h = handle, name = p }
    return d
  end

  local function next_seq()
    load_seq = load_seq + 1
    return load_seq
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
      error(format("ctx.%s: no connection %s in weir.yaml (%s)", what, tostring(name),
                   #known > 0 and "known: " .. concat(known, ", ") or "none configured"), 3)
    end
    if cfg.type == "postgres" then
      c = require("weir.pg").for_task(cfg, M._attempt, opened)
    elseif cfg.type == "redis" then
      c = require("weir.redis").for_task(cfg, M._attempt, opened)
    else
      error(format("ctx.%s: connection %s has unknown type %s", what, name, tostring(cfg.type)), 3)
    end
    conns[name] = c
    return c
  end

  M._attempt = { job = job, stats = stats, next_seq = next_seq, atomic_writer = atomic_writer,
                 log = log }
  X.check = function(d, tbl, rules) return M.check(d, tbl, rules) end
  return X
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
          dl(nil, what .. ": " .. describe(r), row)
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
  while true do
    local b = p.pull()
    if not b then return n end
    for i = 1, #b do fn(b[i]); n = n + 1 end
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
  while true do
    local b = p.pull()
    if not b then return out end
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

--- s:to_jsonl(path): write every row as a JSON object per line (atomic:
-- a temporary file renamed into place). Returns { rows = n, path = path }.
function Stream.to_jsonl(s, path)
  local p = S(s, "to_jsonl")
  local A = M._attempt
  local cjson = require("cjson")
  local w = A.atomic_writer(path)
  local n = 0
  while true do
    local b = p.pull()
    if not b then break end
    local parts = {}
    for i = 1, #b do parts[i] = cjson.encode(b[i]) end
    parts[#parts + 1] = ""
    w.write(concat(parts, "\n"))
    n = n + #b
  end
  w.commit()
  A.stats.rows_out = A.stats.rows_out + n
  return { rows = n, path = path }
end

--- s:to_csv(path, opts): write a CSV file with a header row (atomic).
-- opts.columns fixes the column order; opts.delimiter.
function Stream.to_csv(s, path, opts)
  local p = S(s, "to_csv")
  opts = opts or {}
  local d = opts.delimiter or ","
  if type(d) ~= "string" or #d ~= 1 then
    error("weir.stream.to_csv: bad 'delimiter' (one character expected)", 2)
  end
  local A = M._attempt
  local w = A.atomic_writer(path)
  -- the C writer (connectors/csv.c) quotes what needs quoting
  local out = ffi.new("weir_csv_writer *[1]")
  if C.weir_ffi_csv_writer_new(w.fd, 0, d:byte(), out, F.errbuf, F.errlen) ~= 0 then
    error(path .. ": " .. F.errmsg(), 0)
  end
  local cw = ffi.gc(out[0], C.weir_ffi_csv_writer_delete)
  local fields
  -- the C fields point into Lua strings: keep them referenced until the
  -- row is written, or a GC step in tostring() could free one
  local keep = {} -- luacheck: ignore 241
  local function row(values, count)
    for j = 1, count do
      local v = values[j]
      if type(v) ~= "string" then v = (v == nil or v == NULL) and "" or tostring(v) end
      keep[j] = v
      fields[j - 1].data = v
      fields[j - 1].len = #v
      fields[j - 1].quoted = 0
    end
    if C.weir_ffi_csv_write_row(cw, fields, count, F.errbuf, F.errlen) ~= 0 then
      error(path .. ": " .. F.errmsg(), 0)
    end
  end
  -- a private copy: the caller's table could grow while rows are written
  local cols
  if opts.columns ~= nil then
    if type(opts.columns) ~= "table" then
      error("weir.stream.to_csv: bad 'columns' (array of names expected)", 2)
    end
    cols = {}
    for i, c in ipairs(opts.columns) do
      if type(c) ~= "string" then error("weir.stream.to_csv: bad column " .. i, 2) end
      cols[i] = c
    end
  end
  local function header()
    fields = ffi.new("weir_csv_field[?]", #cols)
    row(cols, #cols)
  end
  if cols then header() end
  local n = 0
  local vals = {}
  while true do
    local b = p.pull()
    if not b then break end
    if not cols then cols = sink_columns(p, b); header() end
    local nc = #cols -- fixed from here on: fields holds exactly #cols
    for i = 1, #b do
      local r = b[i]
      for j = 1, nc do vals[j] = r[cols[j]] end
      row(vals, nc)
    end
    n = n + #b
  end
  if C.weir_ffi_csv_writer_flush(cw, F.errbuf, F.errlen) ~= 0 then
    error(path .. ": " .. F.errmsg(), 0)
  end
  C.weir_ffi_csv_writer_delete(ffi.gc(cw, nil))
  w.commit()
  A.stats.rows_out = A.stats.rows_out + n
  return { rows = n, path = path }
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

--- s:into(db, table, opts): load the stream into a SQLite table in one
-- transaction. opts.mode: "append" (default), "replace" (the table's rows
-- are replaced), "upsert" (opts.key: column or columns; rows with the same
-- key are updated). The table is created from the stream's columns when it
-- does not exist. A ledger row keyed by (run, task, load number) commits
-- in the same transaction, so a retried attempt does not load twice.
-- Returns { rows = n, table = name, mode = mode, skipped = bool }.
function Stream.into(s, target, tbl, opts)
  local p = S(s, "into")
  local dp = priv[target]
  if dp and M.sinks[dp.kind] then return M.sinks[dp.kind](p, dp, tbl, opts) end
  if not dp or dp.kind ~= "db" then
    error("weir.stream.into: bad 'target' (a database from ctx.sqlite expected)", 2)
  end
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
  local A = M._attempt
  local h = dp.h
  local q = dbm.quote
  local seq = A.next_seq()
  local job = A.job
  local function check(ok, err)
    if ok == nil then error(format("sqlite %s: %s", dp.name, tostring(err)), 0) end
    return ok
  end

  check(h:exec(LEDGER))
  check(h:exec("BEGIN IMMEDIATE"))
  local ok, res = pcall(function()
    local done = check(h:all("SELECT rows FROM _weir_loads WHERE run_id = ? AND task = ? AND seq = ?",
                             { job.run_id or "", job.task or "", seq }))[1]
    if done then
      -- drain the source so the stream is consumed as it would be
      while p.pull() do end
      return { rows = done.rows, table = tbl, mode = mode, skipped = true }
    end
    local first = p.pull()
    local n = 0
    if not first and mode == "replace" then
      -- nothing to load: replacing still empties an existing table
      local exists = check(h:all("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 { tbl }))[1]
      if exists then check(h:exec("DELETE FROM " .. q(tbl))) end
    end
    if first then
      local cols = sink_columns(p, first)
      local exists = check(h:all("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
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
        check(h:exec("CREATE TABLE " .. q(tbl) .. " (" .. concat(defs, ", ") .. ")"))
      elseif mode == "upsert" then
        local kq = {}
        for i, k in ipairs(keys) do kq[i] = q(k) end
        check(h:exec("CREATE UNIQUE INDEX IF NOT EXISTS " .. q(tbl .. "__weir_key") .. " ON "
                     .. q(tbl) .. " (" .. concat(kq, ", ") .. ")"))
      end
      if mode == "replace" then check(h:exec("DELETE FROM " .. q(tbl))) end
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
      local st = check(h:prepare(sql))
      local insert = native.db_insert
      local batch = first
      while batch do
        -- bound and stepped in C (weir._native.db_insert), a batch a call
        local ok, err = pcall(insert, st, batch, cols, 1, #batch)
        if not ok then error(format("sqlite %s: table %s: %s", dp.name, tbl, tostring(err)), 0) end
        n = n + #batch
        batch = p.pull()
      end
    end
    check(h:run("INSERT INTO _weir_loads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                { job.run_id or "", job.task or "", seq, tbl, mode, n, job.attempt or 0,
                  native.now() / 1000 }))
    return { rows = n, table = tbl, mode = mode, skipped = false }
  end)
  if not ok then
    h:exec("ROLLBACK")
    error(res, 0)
  end
  check(h:exec("COMMIT"))
  A.stats.rows_out = A.stats.rows_out + res.rows
  return res
end

-- database objects -------------------------------------------------------

local function D(d, what) return owned(d, "db", what) end

--- db:query(sql, params): a stream of the query's rows (bound params).
function Db.query(d, sql, params)
  local p = D(d, "query")
  if type(sql) ~= "string" then error("weir.sqlite.query: bad 'sql' (string expected)", 2) end
  local h = p.h
  local st, err = h:prepare_fresh(sql)
  if not st then error(format("sqlite %s: %s", p.name, tostring(err)), 0) end
  if params then dbm.bind(st, params, params.n or #params) end
  local nc = C.weir_ffi_db_column_count(st)
  local names = {}
  for i = 0, nc - 1 do names[i + 1] = ffi.string(C.weir_ffi_db_column_name(st, i)) end
  local A = M._attempt
  local done = false
  local column = dbm.column
  return new_stream(function()
    if done then return nil end
    local batch, n = {}, 0
    while n < BATCH do
      local rc = C.weir_ffi_db_step(st, F.errbuf, F.errlen)
      if rc == dbm.DONE then done = true; dbm.finalize(st); break end
      if rc ~= dbm.ROW then error(format("sqlite %s: %s", p.name, F.errmsg()), 0) end
      local row = {}
      for i = 0, nc - 1 do row[names[i + 1]] = column(st, i, NULL) end
      n = n + 1
      batch[n] = row
    end
    A.stats.rows_in = A.stats.rows_in + n
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
  return Stream.collect(Db.query(d, sql, params))
end

--- Data quality checks on a table: rules.row_count = { min, max },
-- rules.not_null = { cols }, rules.unique = { cols }. Raises with every
-- failed rule; returns a summary table when all pass.
function M.check(d, tbl, rules)
  local p = D(d, "check")
  local h, q = p.h, dbm.quote
  rules = rules or {}
  local failures, summary = {}, {}
  local function one(sql)
    local r, err = h:all(sql)
    if not r then error(format("sqlite %s: %s", p.name, tostring(err)), 0) end
    return r[1] and r[1].n or 0
  end
  local count = one("SELECT count(*) AS n FROM " .. q(tbl))
  summary.row_count = count
  if rules.row_count then
    local lo, hi = rules.row_count.min, rules.row_count.max
    if lo and count < lo then failures[#failures + 1] = format("row_count %d < min %d", count, lo) end
    if hi and count > hi then failures[#failures + 1] = format("row_count %d > max %d", count, hi) end
  end
  for _, c in ipairs(rules.not_null or {}) do
    local n = one("SELECT count(*) AS n FROM " .. q(tbl) .. " WHERE " .. q(c) .. " IS NULL")
    if n > 0 then failures[#failures + 1] = format("not_null %s: %d null value(s)", c, n) end
  end
  for _, c in ipairs(rules.unique or {}) do
    local n = one("SELECT count(*) AS n FROM (SELECT " .. q(c) .. " FROM " .. q(tbl)
                  .. " GROUP BY " .. q(c) .. " HAVING count(*) > 1)")
    if n > 0 then failures[#failures + 1] = format("unique %s: %d duplicated value(s)", c, n) end
  end
  if #failures > 0 then
    error(format("check %s failed: %s", tbl, concat(failures, "; ")), 0)
  end
  summary.checks = "passed"
  return summary
end

return M
