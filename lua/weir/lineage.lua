-- weir.lineage: dataset names (docs/adr/0030) and the reading of lineage.
--
-- A dataset is named by where its data lives, never by who reaches it:
--
--   postgres://HOST:PORT/DB/SCHEMA.TABLE
--   sqlite:RELATIVE_PATH#TABLE
--   file:RELATIVE_PATH
--   redis://HOST:PORT/DB/KEY
--
-- RELATIVE_PATH is relative to the project folder (the folder of the
-- weir.yaml in use, else the supervisor's working folder); a path outside
-- it stays absolute. No user, no password, no URL query is ever part of a
-- name. Names are built by the connectors of an attempt (in its worker)
-- and read back by `weir lineage`, the OpenLineage export and
-- dataset-triggered pipelines, which compare them as text after
-- normalize(). Pure Lua, no I/O.
local type, ipairs, pairs, tonumber, tostring = type, ipairs, pairs, tonumber, tostring
local format, lower, sub, find, byte = string.format, string.lower, string.sub, string.find,
  string.byte
local concat, sort = table.concat, table.sort

local M = {}

M.PG_PORT, M.REDIS_PORT = 5432, 6379

-- p ("/a/b/../c", "./x") without . and .. parts; relative stays relative
local function clean(p)
  local out = {}
  for part in p:gmatch("[^/]+") do
    if part == ".." then
      if #out > 0 and out[#out] ~= ".." then out[#out] = nil
      elseif sub(p, 1, 1) ~= "/" then out[#out + 1] = ".." end
    elseif part ~= "." then
      out[#out + 1] = part
    end
  end
  local s = concat(out, "/")
  if sub(p, 1, 1) == "/" then return "/" .. s end
  return s
end

--- The path of a dataset for abs (an absolute path): relative to project
-- when inside it, else abs itself (cleaned).
function M.relative(abs, project)
  abs = clean(abs)
  if sub(abs, 1, 1) ~= "/" then return abs end
  if project then
    project = clean(project)
    if project == "/" then return sub(abs, 2) end
    if sub(abs, 1, #project + 1) == project .. "/" then return sub(abs, #project + 2) end
  end
  return abs
end

--- file:PATH for the file at abs.
function M.file(abs, project)
  return "file:" .. M.relative(abs, project)
end

--- sqlite:PATH#TABLE for a table of the SQLite database at abs (SQLite
-- names are case-insensitive: the table is lowercased).
function M.sqlite(abs, project, tbl)
  return "sqlite:" .. M.relative(abs, project) .. "#" .. lower(tbl)
end

local function host_of(h)
  h = lower(tostring(h or "localhost"))
  if find(h, ":", 1, true) and sub(h, 1, 1) ~= "[" then h = "[" .. h .. "]" end
  return h
end

--- postgres://HOST:PORT/DB[/SCHEMA.TABLE] for a normalized weir.yaml
-- connection cfg (host as configured, never its resolved address).
function M.postgres(cfg, schema, tbl)
  local base = format("postgres://%s:%d/%s", host_of(cfg.host), tonumber(cfg.port) or M.PG_PORT,
                      tostring(cfg.database or ""))
  if not tbl then return base end
  return base .. "/" .. (schema or "public") .. "." .. tbl
end

--- redis://HOST:PORT/DB/KEY for a normalized weir.yaml connection cfg.
function M.redis(cfg, key)
  return format("redis://%s:%d/%d/%s", host_of(cfg.host), tonumber(cfg.port) or M.REDIS_PORT,
                tonumber(cfg.database) or 0, key)
end

--- The key pattern of a set of keys written row by row: their longest
-- common prefix and "*" ("user:*"), or the key itself when there is one.
function M.key_pattern(prefix, key)
  if prefix == nil then return key end
  if prefix == key and not find(prefix, "*", 1, true) then return prefix end
  local base = prefix:gsub("%*$", "")
  local n = 0
  while n < #base and n < #key and byte(base, n + 1) == byte(key, n + 1) do n = n + 1 end
  return sub(base, 1, n) .. "*"
end

-- the scheme part of a URL-like name without its userinfo: host, port, rest
local function authority(rest)
  local auth, path = rest:match("^([^/]*)(.*)$")
  auth = auth:gsub("^.*@", "") -- user:password@ goes, always
  local host, port = auth:match("^(%[[^%]]*%]):?(%d*)$")
  if not host then host, port = auth:match("^([^:]*):?(%d*)$") end
  return host, port, path
end

--- The canonical form of a dataset name a user wrote (in a pipeline file,
-- on the command line), so that it compares equal, as text, to the names
-- weir records: postgresql:// becomes postgres://, host lowercased,
-- default ports (5432, 6379) and schema (public) and Redis database (0)
-- filled in, user and password dropped, ./ and a/../ folded out of paths,
-- an absolute path inside project (optional) made relative, SQLite
-- tables lowercased. Returns the name, or nil and a message.
function M.normalize(name, project)
  if type(name) ~= "string" then return nil, "a dataset name must be a string" end
  local s = name:match("^%s*(.-)%s*$")
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and lower(scheme)
  if scheme == "postgres" or scheme == "postgresql" then
    local host, port, path = authority(rest)
    local db, obj = path:match("^/([^/]+)/?(.*)$")
    if not db or host == "" then
      return nil, format("bad dataset %s (expected postgres://HOST:PORT/DB/SCHEMA.TABLE)", s)
    end
    local out = format("postgres://%s:%s/%s", host_of(host), port ~= "" and port or M.PG_PORT, db)
    if obj == "" then return out end
    if not find(obj, ".", 1, true) then obj = "public." .. obj end
    return out .. "/" .. obj
  elseif scheme == "redis" or scheme == "rediss" then
    local host, port, path = authority(rest)
    local dbn, key = path:match("^/(%d+)/(.+)$")
    if not dbn then dbn, key = "0", path:match("^/(.+)$") end
    if not key or host == "" then
      return nil, format("bad dataset %s (expected redis://HOST:PORT/DB/KEY)", s)
    end
    return format("redis://%s:%s/%d/%s", host_of(host), port ~= "" and port or M.REDIS_PORT,
                  tonumber(dbn), key)
  elseif sub(s, 1, 7) == "sqlite:" then
    local path, tbl = s:sub(8):match("^(.+)#([^#]+)$")
    if not path then return nil, format("bad dataset %s (expected sqlite:PATH#TABLE)", s) end
    return M.sqlite(path, project, tbl)
  elseif sub(s, 1, 5) == "file:" and #s > 5 then
    local path = s:sub(6):gsub("^//", "")
    return M.file(path, project)
  end
  return nil, format("bad dataset %s (expected postgres://, sqlite:, file: or redis://)", s)
end

-- SQL reading ---------------------------------------------------------------

-- words after which a table reference may not be an alias
local KEYWORDS = {}
for w in ([[where group order limit offset having window union intersect except join
  inner left right full outer cross natural on using as lateral only select from with
  returning into values fetch for set]]):gmatch("%a+") do KEYWORDS[w] = true end

-- The tokens of sql: { kind = "word"|"quoted"|"punct", text }; comments
-- and string literals are skipped.
local function tokens(sql)
  local out, i, n = {}, 1, #sql
  while i <= n do
    local c = sub(sql, i, i)
    if find(c, "%s") then
      i = i + 1
    elseif sub(sql, i, i + 1) == "--" then
      i = (find(sql, "\n", i, true) or n) + 1
    elseif sub(sql, i, i + 1) == "/*" then
      local e = find(sql, "*/", i + 2, true)
      i = e and e + 2 or n + 1
    elseif c == "'" then
      local j = i + 1
      while j <= n do
        if sub(sql, j, j) == "'" then
          if sub(sql, j + 1, j + 1) == "'" then j = j + 2 else break end
        else
          j = j + 1
        end
      end
      i = j + 1
    elseif c == '"' or c == "`" or c == "[" then
      local close = c == "[" and "]" or c
      local j, buf = i + 1, {}
      while j <= n do
        local d = sub(sql, j, j)
        if d == close then
          if sub(sql, j + 1, j + 1) == close and close ~= "]" then
            buf[#buf + 1] = d
            j = j + 2
          else
            break
          end
        else
          buf[#buf + 1] = d
          j = j + 1
        end
      end
      out[#out + 1] = { kind = "quoted", text = concat(buf) }
      i = j + 1
    elseif find(c, "[%w_$]") then
      local j = i
      while j <= n and find(sub(sql, j, j), "[%w_$]") do j = j + 1 end
      out[#out + 1] = { kind = "word", text = sub(sql, i, j - 1) }
      i = j
    else
      out[#out + 1] = { kind = "punct", text = c }
      i = i + 1
    end
  end
  return out
end

--- The tables a query reads, as far as its text says: the names after
-- FROM and JOIN (comma lists included), without the WITH queries it
-- defines, subqueries or function calls. A list of { schema, name }
-- (schema nil when not written; unquoted names lowercased), each once.
function M.sql_tables(sql)
  local t = tokens(sql)
  local ctes, found, seen = {}, {}, {}
  local function word(k) return t[k] and t[k].kind == "word" and lower(t[k].text) end
  local function ident(k)
    local x = t[k]
    if not x then return nil end
    if x.kind == "quoted" then return x.text end
    if x.kind == "word" and not KEYWORDS[lower(x.text)] then return lower(x.text) end
  end
  -- WITH a AS (...), b AS (...): names that are not tables
  for k = 1, #t do
    if t[k + 1] and word(k + 1) == "as" and t[k + 2] and t[k + 2].text == "(" then
      local prev = t[k - 1]
      if prev and (prev.text == "," or word(k - 1) == "with" or word(k - 1) == "recursive") then
        local n = ident(k)
        if n then ctes[n] = true end
      end
    end
  end
  -- one table reference at k: returns the index after it (and its alias)
  local function ref(k)
    while word(k) == "lateral" or word(k) == "only" do k = k + 1 end
    if t[k] and t[k].text == "(" then return nil end
    local parts = {}
    local n = ident(k)
    if not n then return nil end
    parts[1] = n
    k = k + 1
    while t[k] and t[k].text == "." and ident(k + 1) do
      parts[#parts + 1] = ident(k + 1)
      k = k + 2
    end
    if t[k] and t[k].text == "(" then return nil end -- a function call
    local schema, name = parts[#parts - 1], parts[#parts]
    if not (#parts == 1 and ctes[name]) then
      local key = (schema or "") .. "." .. name
      if not seen[key] then
        seen[key] = true
        found[#found + 1] = { schema = schema, name = name }
      end
    end
    if word(k) == "as" then k = k + 2 elseif ident(k) then k = k + 1 end
    return k
  end
  for k = 1, #t do
    local w = word(k)
    if w == "from" or w == "join" then
      local nxt = ref(k + 1)
      while w == "from" and nxt and t[nxt] and t[nxt].text == "," do
        nxt = ref(nxt + 1)
      end
    end
  end
  return found
end

-- Columns ---------------------------------------------------------------

local function json_type(v)
  local tv = type(v)
  if tv == "number" then return v == math.floor(v) and "integer" or "number" end
  if tv == "boolean" then return "boolean" end
  if tv == "table" then return v[1] ~= nil and "array" or "object" end
  if tv == "string" then return "string" end
  return nil
end

--- The columns of rows written to a file or a key-value store: { name,
-- type } for each of cols (or of the first row's keys, sorted), the type
-- taken from the first row that has a value for it (JSON types).
function M.row_columns(cols, rows)
  if not cols then
    cols = {}
    local first = rows and rows[1]
    if type(first) == "table" then
      for k in pairs(first) do if type(k) == "string" then cols[#cols + 1] = k end end
      sort(cols)
    end
  end
  local out = {}
  for i, c in ipairs(cols) do
    local ty
    for r = 1, rows and #rows or 0 do
      ty = json_type(rows[r][c])
      if ty then break end
    end
    out[i] = { name = c, type = ty or "unknown" }
  end
  return out
end

-- Reading the store ---------------------------------------------------------

--- The lineage graph of edges (rows of store:lineage_edges(): pipeline,
-- task, dataset, role): for dataset, the tasks that write it and what
-- they read, upward, and the tasks that read it and what they write,
-- downward. Returns { dataset, upstream = { node... }, downstream } with
-- node = { pipeline, task, datasets = { { dataset, upstream|downstream } } };
-- a dataset seen before on a path is marked seen = true (cycles).
function M.tree(edges, dataset, max_depth)
  max_depth = max_depth or 8
  local writers, readers, reads, writes = {}, {}, {}, {}
  local function add(t, k, v)
    local l = t[k]
    if not l then l = {}; t[k] = l end
    for _, x in ipairs(l) do if x == v then return end end
    l[#l + 1] = v
  end
  local tasks = {}
  for _, e in ipairs(edges) do
    local id = e.pipeline .. "." .. e.task
    tasks[id] = { pipeline = e.pipeline, task = e.task }
    if e.role == "output" then
      add(writers, e.dataset, id); add(writes, id, e.dataset)
    else
      add(readers, e.dataset, id); add(reads, id, e.dataset)
    end
  end
  local function walk(ds, dir, depth, path)
    local nodes = {}
    local by = dir == "upstream" and writers or readers
    local next_of = dir == "upstream" and reads or writes
    local ids = by[ds] or {}
    sort(ids)
    for _, id in ipairs(ids) do
      local node = { pipeline = tasks[id].pipeline, task = tasks[id].task, datasets = {} }
      local dsl = next_of[id] or {}
      sort(dsl)
      for _, d in ipairs(dsl) do
        local child = { dataset = d }
        if path[d] or depth >= max_depth then
          child.seen = true
        else
          path[d] = true
          child[dir] = walk(d, dir, depth + 1, path)
          path[d] = nil
        end
        node.datasets[#node.datasets + 1] = child
      end
      nodes[#nodes + 1] = node
    end
    return nodes
  end
  return { dataset = dataset, upstream = walk(dataset, "upstream", 1, { [dataset] = true }),
           downstream = walk(dataset, "downstream", 1, { [dataset] = true }) }
end

--- The tree as text lines (for a terminal).
function M.tree_lines(tree)
  local lines = { tree.dataset }
  local function put(nodes, dir, indent)
    for i, n in ipairs(nodes) do
      local last = i == #nodes
      local verb = dir == "upstream" and "written by " or "read by "
      lines[#lines + 1] = indent .. (last and "└─ " or "├─ ") .. verb .. n.pipeline .. "." .. n.task
      local sub_indent = indent .. (last and "   " or "│  ")
      for j, d in ipairs(n.datasets) do
        local dl = j == #n.datasets
        lines[#lines + 1] = sub_indent .. (dl and "└─ " or "├─ ")
                            .. (dir == "upstream" and "reads " or "writes ") .. d.dataset
                            .. (d.seen and " (…)" or "")
        if d[dir] then put(d[dir], dir, sub_indent .. (dl and "   " or "│  ")) end
      end
    end
  end
  lines[#lines + 1] = "upstream:"
  if #tree.upstream == 0 then lines[#lines + 1] = "  (no task of any recorded run writes it)" end
  put(tree.upstream, "upstream", "  ")
  lines[#lines + 1] = "downstream:"
  if #tree.downstream == 0 then lines[#lines + 1] = "  (no task of any recorded run reads it)" end
  put(tree.downstream, "downstream", "  ")
  return lines
end

return M
