-- weir.connectors.file: CSV and JSON Lines files (connectors/csv.c, the
-- CSV codec): ctx.csv and ctx.jsonl sources, to_csv and to_jsonl sinks,
-- dead letters. Every file goes through weir_ffi_file_open (the broker in
-- workers: confined to the roots); a sink writes a temporary file and
-- renames it into place.
local F = require("weir._ffi")
local ffi, C = F.ffi, F.C
local stream = require("weir.stream")
local lineage = require("weir.lineage")
local native = require("weir._native")
local NULL = native.NULL -- SQL NULL in rows: ctx.NULL
local type, pairs, ipairs, pcall, error, tostring, tonumber =
  type, pairs, ipairs, pcall, error, tostring, tonumber
local format, concat, byte = string.format, table.concat, string.byte

local M = {}

local BATCH = stream.BATCH
local O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_CLOEXEC, O_TEMP =
  C.WEIR_O_RDONLY, C.WEIR_O_WRONLY, C.WEIR_O_CREAT, C.WEIR_O_EXCL, C.WEIR_O_CLOEXEC,
  C.WEIR_O_TEMP
local nread = ffi.new("int64_t[1]")

-- the attempt whose ctx made the streams (one attempt per state)
local current

local num_format = native.num_format
-- A field's CSV text for a value that is not a string: NULL (and nil) an
-- empty field; a number exactly (integers in full, other doubles in the
-- shortest text that reads back; NaN and infinities as Lua writes them);
-- a table (an array, a JSON value) as JSON text.
local function csv_text(v)
  local t = type(v)
  if t == "number" then return num_format(v) or tostring(v) end
  if v == nil or v == NULL then return "" end
  if t == "table" then return require("weir.json").encode(v) end
  return tostring(v)
end

-- A file written to a temporary name and renamed into place on commit,
-- so readers never see half a file and a failed attempt leaves none.
local function atomic_writer(A, p)
  local job, opened = A.job, A.opened
  local abs = A.path(p)
  A.mkdirs(abs)
  local tmp = format("%s.tmp-%s-%d", abs, tostring(job.task), job.attempt or 0)
  -- created new (a leftover of an earlier run goes first): the
  -- supervisor removes it when the run ends if this attempt is killed
  -- before renaming it (WEIR_O_TEMP)
  C.weir_ffi_file_unlink(tmp, F.errbuf, F.errlen)
  local fd = A.open_fd(tmp, O_WRONLY + O_CREAT + O_EXCL + O_CLOEXEC + O_TEMP, p)
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

-- Whether COPY would read the file as the row path does (no line \.,
-- the end of data to COPY even in CSV format): one pass in C.
local function copy_safe(open)
  local fd = open()
  local ok, safe = pcall(native.copy_safe, fd)
  C.weir_ffi_file_close(fd)
  return ok and safe
end

-- The first number of a JSON line that a double cannot hold exactly (more
-- significant digits than it keeps, or beyond its range), found outside
-- strings; nil when there is none. Only lines with 16 digits in a row or
-- an exponent are looked at closely.
local decimal_exact = native.decimal_exact
local function inexact_number(l)
  if not (l:find("%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d") or l:find("%d[eE][-+]?%d")) then
    return nil
  end
  local i, n = 1, #l
  while i <= n do
    local c = byte(l, i)
    if c == 34 then                     -- a string: skip it, escapes too
      i = i + 1
      while i <= n do
        local ch = byte(l, i)
        if ch == 92 then i = i + 2 elseif ch == 34 then break else i = i + 1 end
      end
      i = i + 1
    elseif c == 45 or (c >= 48 and c <= 57) then
      local s, e = l:find("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
      if not s then return nil end
      local tok = l:sub(s, e)
      if not decimal_exact(tok) then return tok end
      i = e + 1
    else
      i = i + 1
    end
  end
  return nil
end

-- Dead letters: bad rows with the reason, as JSON Lines. The file is the
-- attempt's own, written like a file sink (a temporary file renamed into
-- place when the source has been read to its end), so a retry or a
-- resume replaces it instead of appending the same rows again. Sources of
-- one attempt naming the same file share it; it is renamed when the last
-- of them ends. Each rejected row counts in A.stats.rejected, and, when
-- the source rejected it (counted = true: it never reached rows_in),
-- in rows_in: rows in = rows loaded + rows rejected. One log line per
-- source says how many went where. Returns dl(line, reason, row,
-- counted) and the state { count } the stream's sinks report, or nil.
local function dead_letter_sink(A, p, source)
  if not p then return nil end
  local encode = require("weir._native").json_encode
  local job, stats = A.job, A.stats
  local abs = A.path(p)
  A.dead_letters = A.dead_letters or {}
  local f = A.dead_letters[abs]
  if not f then
    f = { w = atomic_writer(A, p), users = 0 }
    A.dead_letters[abs] = f
  end
  f.users = f.users + 1
  local st = { count = 0 }
  local first
  local function dl(line, reason, row, counted)
    st.count = st.count + 1
    stats.rejected = stats.rejected + 1
    if counted ~= false then stats.rows_in = stats.rows_in + 1 end
    first = first or reason
    local s = encode({ source = source, line = line, reason = reason, row = row,
                       run_id = job.run_id, task = job.task, attempt = job.attempt })
      or encode({ source = source, line = line, reason = reason })
    f.w.write(s .. "\n")
  end
  -- the source read to its end: the file is complete for this source
  local function ended()
    if st.ended then return end
    st.ended = true
    if st.count > 0 then
      A.log(format("%s: %d row%s rejected, written to %s (first: %s)", source, st.count,
                   st.count == 1 and "" or "s", p, first))
    end
    f.users = f.users - 1
    if f.users == 0 then f.w.commit() end
  end
  st.ended_fn = ended
  return dl, st
end
--- ctx.csv and ctx.jsonl for the attempt A (weir.connectors).
function M.context(A, X)
  current = A
  --- CSV source: header row gives the columns. opts: delimiter, quote,
  -- types = { col = "number"|"integer"|"boolean" }, dead_letter = path,
  -- max_row_bytes.
  function X.csv(p, opts)
    opts = opts or {}
    local abs = A.path(p)
    if opts.delimiter ~= nil and (type(opts.delimiter) ~= "string" or #opts.delimiter ~= 1) then
      error("ctx.csv: bad 'delimiter' (one character expected)", 3)
    end
    if opts.quote ~= nil and (type(opts.quote) ~= "string" or #opts.quote > 1) then
      error("ctx.csv: bad 'quote' (one character, or \"\" for none)", 3)
    end
    local delim = (opts.delimiter or ","):byte()
    local quote = (opts.quote or "\""):byte() or 0
    local fd = A.open_fd(abs, O_RDONLY + O_CLOEXEC, p)
    local ds = A.dataset(lineage.file(abs, A.project), "input")
    local out = ffi.new("weir_csv_reader *[1]")
    local rc = C.weir_ffi_csv_reader_new(fd, 1, delim, quote, opts.max_row_bytes or 1048576,
                                         out, F.errbuf, F.errlen)
    if rc ~= 0 then C.weir_ffi_file_close(fd); error(p .. ": " .. F.errmsg(), 0) end
    local r = ffi.gc(out[0], C.weir_ffi_csv_reader_delete)
    A.opened[#A.opened + 1] = function()
      if r then C.weir_ffi_csv_reader_delete(ffi.gc(r, nil)); r = nil end
    end
    local fields = ffi.new("const weir_csv_field *[1]")
    local nf = ffi.new("uint32_t[1]")
    local rawp = ffi.new("const char *[1]")
    local rawn = ffi.new("size_t[1]")
    local line = ffi.new("uint64_t[1]")
    local dl, dls = dead_letter_sink(A, opts.dead_letter, p)
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
    -- shapes that would load silently wrong: refused, or read as meant
    if header[1] and header[1]:sub(1, 3) == "\239\187\191" then
      header[1] = header[1]:sub(4)   -- a UTF-8 byte order mark is not a name
    end
    local seen = {}
    for i, name in ipairs(header) do
      if name:find("\r", 1, true) then
        error(format("%s: the header row holds a carriage return: the file's lines end with "
                     .. "CR alone (convert them to LF or CRLF), or a column name has one", p), 0)
      end
      if seen[name] then
        error(format("%s: columns %d and %d are both named %q: a row can hold only one of "
                     .. "them (rename one)", p, seen[name], i, name), 0)
      end
      seen[name] = i
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
          A.stats.rows_in = A.stats.rows_in + #rows
          ds.rows = ds.rows + #rows
          return rows
        end
      end
      if dls then dls.ended_fn() end
      return nil
    end
    local s = stream.new_stream(pull, header, { dl = dl, dl_state = dls, source = p })
    if not dl and not types and opts.quote ~= "" then
      -- untouched (no operator applies to this very stream object), a CSV
      -- file can go to a database as it is: a PostgreSQL sink then sends
      -- the bytes to COPY ... (FORMAT csv) instead of rows. Not without a
      -- quote character (COPY's CSV always has one)
      local function open() return A.open_fd(abs, O_RDONLY + O_CLOEXEC, p) end
      stream.state(s).raw_csv = { name = p, header = header, delimiter = opts.delimiter or ",",
                                  quote = opts.quote or "\"", open = open, dataset = ds,
                                  copy_safe = function() return copy_safe(open) end }
    end
    return s
  end


  --- JSON Lines source: one object per line. opts: dead_letter = path.
  function X.jsonl(p, opts)
    opts = opts or {}
    local decode = require("weir._native").json_decode
    local abs = A.path(p)
    local fd = A.open_fd(abs, O_RDONLY + O_CLOEXEC, p)
    A.opened[#A.opened + 1] = function() if fd then C.weir_ffi_file_close(fd); fd = nil end end
    local ds = A.dataset(lineage.file(abs, A.project), "input")
    local dl, dls = dead_letter_sink(A, opts.dead_letter, p)
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
          local v, derr = decode(l)
          local ok = v ~= nil
          if not ok then v = derr end
          -- a number no double holds (1e400 too) is named as such
          local bad_num = inexact_number(l)
          if bad_num then
            ok, v = false, format("the number %s cannot be held exactly (a double keeps about "
                                  .. "15 significant digits): quote it as a string", bad_num)
          end
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
      A.stats.rows_in = A.stats.rows_in + n
      ds.rows = ds.rows + n
      if n == 0 then
        if dls then dls.ended_fn() end
        return nil
      end
      return batch
    end
    return stream.new_stream(pull, nil, { dl = dl, dl_state = dls, source = p })
  end

end

-- The lineage of a file sink: n rows of columns written to path.
local function wrote(A, path, n, columns)
  local d = A.dataset(lineage.file(A.path(path), A.project), "output")
  d.rows = d.rows + n
  d.columns = d.columns or columns
end

--- s:to_jsonl(path): write every row as a JSON object per line (atomic:
-- a temporary file renamed into place). Returns { rows = n, path = path }.
stream.method("to_jsonl", function(p, path)
  local A = current
  local json = require("weir.json")
  local encode = require("weir._native").json_encode
  local w = atomic_writer(A, path)
  local n = 0
  local cols
  while true do
    local b = p.pull()
    if not b then break end
    cols = cols or lineage.row_columns(nil, b)
    local parts = {}
    -- runtime/json.c; weir.json to say what is wrong with a row it refuses
    for i = 1, #b do
      local row = b[i]
      parts[i] = encode(row) or json.encode(row)
    end
    parts[#parts + 1] = ""
    w.write(concat(parts, "\n"))
    n = n + #b
  end
  w.commit()
  A.stats.rows_out = A.stats.rows_out + n
  wrote(A, path, n, cols)
  A.written[#A.written + 1] = { jsonl = path, shown = "file:" .. path }
  return { rows = n, path = path }
end)

--- s:to_csv(path, opts): write a CSV file with a header row (atomic).
-- opts.columns fixes the column order; opts.delimiter.
stream.method("to_csv", function(p, path, opts)
  opts = opts or {}
  local d = opts.delimiter or ","
  if type(d) ~= "string" or #d ~= 1 then
    error("weir.stream.to_csv: bad 'delimiter' (one character expected)", 2)
  end
  local A = current
  local w = atomic_writer(A, path)
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
      if type(v) ~= "string" then v = csv_text(v) end
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
  local vals, types = {}, nil
  while true do
    local b = p.pull()
    if not b then break end
    if not cols then cols = stream.sink_columns(p, b); header() end
    if not types then types = lineage.row_columns(cols, b) end
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
  wrote(A, path, n, types or lineage.row_columns(cols, {}))
  A.written[#A.written + 1] = { csv = path, shown = "file:" .. path }
  return { rows = n, path = path }
end)

--- A CSV or JSON Lines file to check (weir.checks): each(fn) calls fn
-- on every row in one pass (not counted as the task's rows in).
function M.dataset(A, X, kind, path)
  local function open() if kind == "csv" then return X.csv(path) end return X.jsonl(path) end
  local function each(fn)
    local before = A.stats.rows_in
    local pull = stream.state(open()).pull
    while true do
      local b = pull()
      if not b then break end
      for i = 1, #b do fn(b[i]) end
    end
    A.stats.rows_in = before
  end
  return { kind = kind, name = "file:" .. path, path = path, each = each, stream = open }
end

--- s:validate(rule, opts): keep the rows that pass rule, a JSON Schema
-- (a table) or a function(row) returning true, or false and a reason (a
-- raising function rejects the row with its error). opts.dead_letter =
-- path: each rejected row goes there as a JSON line { n, reason, row,
-- run_id, task }, the file written to a temporary name and renamed into
-- place when the stream ends (replaced per attempt, like to_csv); without
-- it a rejected row fails the task. Rows in = rows out + rows rejected.
stream.method("validate", function(p, rule, opts)
  opts = opts or {}
  local A = current
  local test
  local describe = require("weir.sandbox").describe_error
  if type(rule) == "function" then
    test = function(row)
      local ok, good, why = pcall(rule, row)
      if not ok then return describe(good) end
      if good then return nil end
      return why ~= nil and tostring(why) or "rejected by the validation function"
    end
  elseif type(rule) == "table" then
    local schema = require("weir.schema")
    local v, err = schema.compile(rule)
    if not v then error("weir.stream.validate: bad schema: " .. tostring(err), 2) end
    test = function(row)
      local ok, errs = v:validate(row)
      if ok then return nil end
      return schema.format_errors(errs):gsub("\n", "; ")
    end
  else
    error("weir.stream.validate: bad 'rule' (a JSON Schema table or a function expected)", 2)
  end
  local dl_path = opts.dead_letter
  if dl_path ~= nil and (type(dl_path) ~= "string" or dl_path == "") then
    error("weir.stream.validate: bad 'dead_letter' (a path expected)", 2)
  end
  local w = dl_path and atomic_writer(A, dl_path)
  local json = require("weir.json")
  local job = A.job
  local up, seen, rejected, ended = p.pull, 0, 0, false
  return stream.new_stream(function()
    while true do
      local batch = up()
      if not batch then
        if not ended then
          ended = true
          if w then w.commit() end
          A.log(format("validate: %d rows in, %d passed, %d rejected%s", seen, seen - rejected,
                       rejected, dl_path and (" (to " .. dl_path .. ")") or ""))
        end
        return nil
      end
      local out, n = {}, 0
      for i = 1, #batch do
        local row = batch[i]
        seen = seen + 1
        local why = test(row)
        if why == nil then
          n = n + 1
          out[n] = row
        elseif w then
          rejected = rejected + 1
          local rec = { n = seen, reason = why, row = row, run_id = job.run_id, task = job.task }
          local ok, s = pcall(json.encode, rec)
          if not ok then
            rec.row = nil
            s = json.encode(rec)
          end
          w.write(s .. "\n")
        else
          error(format("validate: row %d: %s", seen, why), 0)
        end
      end
      if n > 0 then return out end
    end
  end, p.columns, p.shared)
end)

return M
