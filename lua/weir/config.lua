-- weir.config: find and load weir.yaml (connections and global settings),
-- expand secret references, normalize connections, redact secrets.
--
-- Steps, as weir.pipeline does for pipelines: YAML (weir._native), expand
-- ${env:NAME} / ${file:PATH} in every string value, JSON Schema
-- (schemas/config.schema.json), then semantic checks (URLs, ports,
-- durations, sizes, bounds). Every error is collected and reported at once
-- as "FILE:LINE: path: message"; each message is redacted before it is
-- returned, so no secret leaves this module through an error.
--
-- References: "${env:NAME}" is the environment variable NAME (unset is an
-- error, empty is allowed); "${file:PATH}" is the file's content, PATH
-- relative to the config file's folder, with one trailing "\n" (or "\r\n")
-- removed; the file, symlinks resolved, must lie inside the config's
-- folder or a folder of WEIR_SECRET_DIRS (docs/adr/0013). cfg.secret_files
-- lists the files read, for the broker to hide from tasks. "$${" stands
-- for a literal "${". A value given both inside `url` and as a separate
-- field takes the separate field. A YAML null counts as
-- absent, except for a connection itself.
local json = require("weir.json")
local document = require("weir.document")
local connectors = require("weir.connectors")
local util = require("weir.util")
local pipeline = require("weir.pipeline")
local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local format, find, sub, floor = string.format, string.find, string.sub, math.floor
local sort, concat = table.sort, table.concat
local getmetatable, setmetatable, error, next = getmetatable, setmetatable, error, next

local M = {}
local serve_section -- defined below M.load

local KB, MB = 1024, 1024 * 1024
local MAX_MS = 2147483647        -- durations end up in C ints
local MAX_SECRET_FILE = 1 * MB   -- a ${file:} bigger than this is a mistake

--- Defaults of every normalized connection's pool and breaker (durations
-- in ms, sizes in bytes); each connector has its own (M.DEFAULTS there).
M.DEFAULTS = {
  pool = { min = 0, max = 4, idle_timeout_ms = 60000, max_lifetime_ms = 1800000 },
  breaker = { threshold = 5, window_ms = 30000, open_ms = 10000, half_open_probes = 1 },
}

-- Secrets of each loaded config and of each of its connections, kept out
-- of the tables themselves so dumping a config never dumps the list.
local secrets_of = setmetatable({}, { __mode = "k" })

---------------------------------------------------------------------------
-- Redaction
---------------------------------------------------------------------------

-- Replace every plain occurrence of needle in s with rep.
local function replace_plain(s, needle, rep)
  local i = find(s, needle, 1, true)
  if not i then return s end
  local out, from = {}, 1
  while i do
    out[#out + 1] = sub(s, from, i - 1)
    out[#out + 1] = rep
    from = i + #needle
    i = find(s, needle, from, true)
  end
  out[#out + 1] = sub(s, from)
  return concat(out)
end

-- "scheme://user:PASSWORD@" -> "scheme://user:***@". The password runs to
-- the last "@" before a space, quote or "/", so an unencoded "@" in it is
-- still covered.
local function mask_urls(s)
  return (s:gsub("([%a][%w+.-]*://[^:/@%s\"'<>]*):[^%s/\"'<>]*@", "%1:***@"))
end

local function sorted_secrets(set)
  local list = {}
  for s in pairs(set) do list[#list + 1] = s end
  sort(list, function(a, b)
    if #a ~= #b then return #a > #b end
    return a < b
  end)
  return list
end

local function redact_with(list, text)
  -- nothing to mask: no secret, and no "user:password@" a URL could hold
  if list[1] == nil and not find(text, "@", 1, true) then return text end
  -- JSON text (task outputs) may write "/" as "\/": undo that first (the
  -- same JSON), so neither a URL nor a secret hides behind the escape; a
  -- secret with a quote or a backslash is also found in its escaped form
  text = string.gsub(text, "\\/", "/")
  for _, s in ipairs(list) do
    text = replace_plain(text, s, "***")
    local e = string.gsub(s, "[\\\"]", "\\%0")
    if e ~= s then text = replace_plain(text, e, "***") end
  end
  return mask_urls(text)
end

---------------------------------------------------------------------------
-- Paths, lines, errors
---------------------------------------------------------------------------

-- Same path syntax as weir.schema: a.b, odd keys quoted (a["x.y"]).
local function child(base, key)
  if key == "" or find(key, "[%.%[%]\"%s%c]") then
    return base .. "[" .. format("%q", key) .. "]"
  end
  if base == "" then return key end
  return base .. "." .. key
end

---------------------------------------------------------------------------
-- Reference expansion
---------------------------------------------------------------------------

local realpath = util.realpath

local function inside(path, dir)
  return dir == "/" or path == dir or sub(path, 1, #dir + 1) == dir .. "/"
end

-- Where ${file:} may read: the config's folder (unless st.only_secret_dirs)
-- and the folders listed in WEIR_SECRET_DIRS (colon-separated), every one
-- canonical.
local function secret_dirs(st)
  if st.secret_dirs then return st.secret_dirs end
  local dirs = {}
  local function add(d)
    local r = realpath(d)
    if r then dirs[#dirs + 1] = r end
  end
  if not st.only_secret_dirs then add(st.dir) end
  for d in (st.getenv("WEIR_SECRET_DIRS") or ""):gmatch("[^:]+") do
    add(pipeline.abspath(d))
  end
  st.secret_dirs = dirs
  return dirs
end

-- The text of the file rel (relative to the config's folder), at most
-- MAX_SECRET_FILE bytes; when confined, only once it is known to lie,
-- symlinks resolved, inside a secret folder. Its canonical path goes into
-- st.files (the broker hides those from tasks).
local function read_config_file(st, rel, confined)
  local full = util.join(st.dir, rel)
  local real, rerr0 = realpath(full)
  if not real then return nil, rerr0 end
  local ok = not confined
  for _, d in ipairs(confined and secret_dirs(st) or {}) do
    if inside(real, d) then ok = true end
  end
  if not ok then
    return nil, st.only_secret_dirs and "outside the folders of WEIR_SECRET_DIRS"
                or "outside the config's folder and WEIR_SECRET_DIRS"
  end
  st.files[#st.files + 1] = real
  local f, err = io.open(real, "rb")
  if not f then
    -- io.open says "FULLPATH: reason"; keep the reason only
    local reason = tostring(err)
    if sub(reason, 1, #real + 2) == real .. ": " then reason = sub(reason, #real + 3) end
    return nil, reason
  end
  local s, rerr = f:read(MAX_SECRET_FILE + 1)
  f:close()
  if s == nil and rerr then return nil, tostring(rerr) end
  s = s or ""
  if #s > MAX_SECRET_FILE then return nil, "larger than " .. util.human_size(MAX_SECRET_FILE) end
  return s
end

-- A ${file:} reference: the confined file's text, one trailing newline off.
local function read_secret_file(st, rel)
  local s, err = read_config_file(st, rel, true)
  if not s then return nil, err end
  if sub(s, -2) == "\r\n" then
    s = sub(s, 1, -3)
  elseif sub(s, -1) == "\n" then
    s = sub(s, 1, -2)
  end
  return s
end

-- Settings that are not credentials: a reference there (a port from
-- ${env:PGPORT}) is not a secret, so it is not masked everywhere.
local PLAIN = { type = true, host = true, port = true, database = true, user = true,
                sslmode = true, application_name = true, connect_timeout = true,
                statement_timeout = true, timeout = true, max_result_size = true,
                max_reply_size = true }
local function plain_setting(path)
  local parent, key = path:match("([%w_]+)%.([%w_]+)$")
  return PLAIN[key or ""] == true or parent == "pool" or parent == "breaker"
end

-- Expand the references in s. Returns the new string, or nil after
-- adding an error. Substituted values go into st.secrets.
local function expand(s, path, st)
  if not find(s, "$", 1, true) then return s end
  local out, i = {}, 1
  while true do
    local j = find(s, "$", i, true)
    if not j then
      out[#out + 1] = sub(s, i)
      break
    end
    out[#out + 1] = sub(s, i, j - 1)
    local nxt = sub(s, j + 1, j + 1)
    if nxt == "$" and sub(s, j + 2, j + 2) == "{" then
      out[#out + 1] = "${"
      i = j + 3
    elseif nxt == "{" then
      local close = find(s, "}", j + 2, true)
      if not close then
        st.add(path, "unterminated \"${\" (write \"$${\" for a literal \"${\")")
        return nil
      end
      local kind, arg = sub(s, j + 2, close - 1):match("^(%a+):(.*)$")
      local v
      if kind == "env" then
        if not arg:match("^[A-Za-z_][A-Za-z0-9_]*$") then
          st.add(path, "bad variable name in ${env:NAME} (letters, digits and _)")
          return nil
        end
        v = st.getenv(arg)
        if v == nil then
          st.add(path, format("environment variable %s is not set", arg))
          return nil
        end
      elseif kind == "file" then
        if arg == "" then
          st.add(path, "empty path in ${file:PATH}")
          return nil
        end
        local err
        v, err = read_secret_file(st, arg)
        if not v then
          st.add(path, format("cannot read secret file %q: %s", arg, err))
          return nil
        end
      elseif kind and #kind <= 16 then
        st.add(path, format("unknown reference ${%s:...} (expected ${env:NAME} or ${file:PATH};"
                            .. " write \"$${\" for a literal \"${\")", kind))
        return nil
      else
        st.add(path, "bad reference (expected ${env:NAME} or ${file:PATH};"
                     .. " write \"$${\" for a literal \"${\")")
        return nil
      end
      v = tostring(v)
      if v ~= "" and not plain_setting(path) then st.secrets[v] = true end
      st.substituted[path] = true
      out[#out + 1] = v
      i = close + 1
    else
      out[#out + 1] = "$"
      i = j + 1
    end
  end
  return concat(out)
end

--- The value of one secret reference outside weir.yaml (a pipeline's
-- webhook secret): "${env:NAME}", or "${file:PATH}" with PATH relative to
-- dir, read as weir.yaml's are except that the file must lie in a folder
-- of WEIR_SECRET_DIRS (tasks can never reach those; dir they may).
-- Returns the value, or nil, message (never the value).
function M.secret_value(ref, dir)
  local errs = {}
  local st = { dir = dir, getenv = os.getenv, files = {}, secrets = {}, substituted = {},
               only_secret_dirs = true,
               add = function(_, msg) errs[#errs + 1] = msg end }
  local v = expand(ref, "", st)
  if v == nil then return nil, errs[1] end
  if v == "" then return nil, "the secret " .. ref .. " is empty" end
  return v
end

-- Expand every string value under t in place and drop nulls (not the
-- connections themselves). A "password" value is a secret whatever its
-- source.
local function expand_tree(t, path, st, keep_null)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  for _, k in ipairs(keys) do
    local v = t[k]
    local p = type(k) == "number" and format("%s[%d]", path, k) or child(path, tostring(k))
    if v == json.null and not keep_null then
      t[k] = nil
    elseif type(v) == "string" then
      local e = expand(v, p, st)
      if e == nil then
        -- later checks of this value would only repeat the problem
        t[k] = st.failed
        st.failed_paths[p] = true
      else
        t[k] = e
      end
      if k == "password" or k == "api_key" then
        -- failed: the text may still be a literal password
        local secret = e or v
        if secret ~= "" then st.secrets[secret] = true end
      end
    elseif type(v) == "number" and k == "password" then
      st.secrets[tostring(v)] = true
    elseif type(v) == "table" and v ~= json.null then
      expand_tree(v, p, st, k == "connections" and path == "")
    end
  end
end

---------------------------------------------------------------------------
-- URLs
---------------------------------------------------------------------------

local function unescape(s)
  if not find(s, "%", 1, true) then return s end
  if find(s, "%%%X") or find(s, "%%.%X") or find(s, "%%.?$") then return nil end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Split a URL "scheme://[user[:password]@][host][:port][/path][?query]".
-- Returns { scheme, user, password, password_raw, host, port, path,
-- query = { {key, value}, ... } } with user, password, host, path and query
-- percent-decoded, or nil, message. The message never quotes the URL.
function M.parse_url(s)
  if type(s) ~= "string" then return nil, "expected a URL string" end
  local scheme, rest = s:match("^([%a][%w+.-]*)://(.*)$")
  if not scheme then return nil, "expected a URL like scheme://host:port/..." end
  local u = { scheme = scheme:lower(), query = {} }
  if find(rest, "#", 1, true) then return nil, "a URL fragment (#...) is not allowed" end
  local authority, tail = rest:match("^([^/?]*)(.*)$")
  -- the userinfo ends at the last "@", so a raw "@" in a password works
  local at = authority:match("^.*()@")
  local hostport = authority
  if at then
    local userinfo = sub(authority, 1, at - 1)
    hostport = sub(authority, at + 1)
    local colon = find(userinfo, ":", 1, true)
    local user = colon and sub(userinfo, 1, colon - 1) or userinfo
    if user ~= "" then
      u.user = unescape(user)
      if not u.user then return nil, "bad percent-encoding in the URL's user" end
    end
    if colon then
      u.password_raw = sub(userinfo, colon + 1)
      u.password = unescape(u.password_raw)
      if not u.password then return nil, "bad percent-encoding in the URL's password" end
    end
  end
  local host, port
  if sub(hostport, 1, 1) == "[" then
    host, port = hostport:match("^%[([^%]]*)%](.*)$")
    if not host then return nil, "unterminated [ in the URL's host" end
  else
    host, port = hostport:match("^([^:]*)(.*)$")
  end
  if port ~= "" then
    port = port:match("^:(%d+)$")
    if not port then return nil, "the URL's port must be digits" end
    u.port = tonumber(port)
    if u.port < 1 or u.port > 65535 then return nil, "the URL's port must be 1..65535" end
  end
  if find(host, ",", 1, true) then return nil, "several hosts in one URL are not supported" end
  if host ~= "" then
    u.host = unescape(host)
    if not u.host then return nil, "bad percent-encoding in the URL's host" end
  end
  local path, query = tail:match("^([^?]*)%??(.*)$")
  if path ~= "" then
    u.path = unescape(path)
    if not u.path then return nil, "bad percent-encoding in the URL's path" end
  end
  for pair in query:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = unescape(k), unescape(v)
    if not k or not v then return nil, "bad percent-encoding in the URL's query" end
    u.query[#u.query + 1] = { k, v }
  end
  return u
end

---------------------------------------------------------------------------
-- Field checks (all messages may show the value: they are redacted later)
---------------------------------------------------------------------------

-- An integer lo..hi from a number or a string of digits.
local function int_in(v, lo, hi, path, add)
  local n = v
  if type(v) == "string" and v:match("^%s*%d+%s*$") then n = tonumber(v) end
  if type(n) ~= "number" or n ~= floor(n) or n < lo or n > hi then
    add(path, format("expected integer %d..%d, got %s", lo, hi, util.show(v)))
    return nil
  end
  return n
end

-- Milliseconds from a duration ("500ms", "30s", a number of seconds, or a
-- string of digits, e.g. from ${env:}), at least min_ms.
local function ms_of(v, path, add, min_ms)
  if type(v) == "string" and v:match("^%s*%d+%.?%d*%s*$") then v = tonumber(v) end
  local s, err = util.duration(v)
  if not s then
    add(path, err .. (type(v) == "number" and format(", got %s", util.show(v)) or ""))
    return nil
  end
  local ms = floor(s * 1000 + 0.5)
  if ms < min_ms then
    add(path, min_ms == 0 and "must be >= 0" or format("must be at least %dms", min_ms))
    return nil
  end
  if ms > MAX_MS then
    add(path, "must be at most " .. util.human_duration(MAX_MS / 1000))
    return nil
  end
  return ms
end

local function bytes_of(v, path, add)
  local n, err = util.size(v)
  if not n then
    add(path, err .. (type(v) == "number" and format(", got %s", util.show(v)) or ""))
    return nil
  end
  if n < KB then
    add(path, "must be at least 1KB")
    return nil
  end
  return n
end

-- Fill a pool table from raw (may be nil or malformed).
local function pool_of(raw, base, add)
  local d = M.DEFAULTS.pool
  local p = { min = d.min, max = d.max, idle_timeout_ms = d.idle_timeout_ms,
              max_lifetime_ms = d.max_lifetime_ms }
  if type(raw) ~= "table" then return p end
  if raw.min ~= nil then p.min = int_in(raw.min, 0, 1000, base .. ".min", add) or p.min end
  if raw.max ~= nil then p.max = int_in(raw.max, 1, 1000, base .. ".max", add) or p.max end
  if p.min > p.max then
    add(base, format("min (%d) must not exceed max (%d)", p.min, p.max))
  end
  if raw.idle_timeout ~= nil then
    p.idle_timeout_ms = ms_of(raw.idle_timeout, base .. ".idle_timeout", add, 0) or p.idle_timeout_ms
  end
  if raw.max_lifetime ~= nil then
    p.max_lifetime_ms = ms_of(raw.max_lifetime, base .. ".max_lifetime", add, 0) or p.max_lifetime_ms
  end
  return p
end

local function breaker_of(raw, base, add)
  local d = M.DEFAULTS.breaker
  local b = { threshold = d.threshold, window_ms = d.window_ms, open_ms = d.open_ms,
              half_open_probes = d.half_open_probes }
  if type(raw) ~= "table" then return b end
  if raw.threshold ~= nil then
    b.threshold = int_in(raw.threshold, 1, 1000000, base .. ".threshold", add) or b.threshold
  end
  if raw.half_open_probes ~= nil then
    b.half_open_probes = int_in(raw.half_open_probes, 1, 1000, base .. ".half_open_probes", add)
                         or b.half_open_probes
  end
  if raw.window ~= nil then b.window_ms = ms_of(raw.window, base .. ".window", add, 1) or b.window_ms end
  if raw.open ~= nil then b.open_ms = ms_of(raw.open, base .. ".open", add, 1) or b.open_ms end
  return b
end

-- A problem with the URL at path. A reference substituted into a URL is
-- the usual cause (a password with "/" or "?" in it), so say so then.
local function url_error(st, path, u, msg)
  u.bad = true
  if st.substituted[path] then
    msg = msg .. " (a value substituted into a URL must be percent-encoded, or given as a"
          .. " separate field)"
  end
  st.add(path, msg)
end

-- The URL of a connection, checked for scheme. Returns the parsed URL (an
-- empty table when there is none; u.bad when it is wrong).
local function url_of(c, base, st, schemes, what, hints)
  if c.url == nil then return {} end
  local path = base .. ".url"
  if type(c.url) ~= "string" then
    st.add(path, "expected a " .. what .. " URL string")
    return { bad = true }
  end
  local u, err = M.parse_url(c.url)
  if u and not schemes[u.scheme] then
    err = hints and hints[u.scheme] or format("expected a %s URL, got scheme %q", what, u.scheme)
    u = nil
  end
  if not u then
    u = {}
    url_error(st, path, u, err)
  end
  return u
end

-- A URL's password is a secret, as written and decoded. Only taken from a
-- URL that parsed well: a misparsed one yields a bogus piece of text.
local function keep_url_password(u, st)
  if u.bad then return end
  if u.password and u.password ~= "" then st.secrets[u.password] = true end
  if u.password_raw and u.password_raw ~= "" then st.secrets[u.password_raw] = true end
end

-- Value of field k: the separate field wins over the URL's part.
local function pick(c, u, k, base)
  if c[k] ~= nil then return c[k], base .. "." .. k end
  return u[k], base .. ".url"
end

local function password_of(c, u, base, st)
  local v = c.password
  if v == nil then return u.password end
  if type(v) ~= "string" then
    st.add(base .. ".password", "expected a string (quote it in YAML)")
    return nil
  end
  return v
end

local function str_field(c, u, k, base, st)
  local v, path = pick(c, u, k, base)
  if v == nil then return nil end
  if type(v) ~= "string" or v == "" then
    st.add(path, "expected a non-empty string, got " .. util.show(v))
    return nil
  end
  return v
end

-- The TLS files of a connection (docs/adr/0015): tls = { ca, cert, key,
-- crl } (those of `allowed`), each a path relative to the config's
-- folder; ca may be "system" (OpenSSL's default bundle). The supervisor
-- reads them here, since workers cannot open files; the connection
-- carries their PEM text to workers. cert and key are credentials: like
-- ${file:}, they must lie in the config's folder or WEIR_SECRET_DIRS, and
-- the key's text is a secret (redacted). ca and crl are public and may be
-- anywhere. paths: extra paths (a URL's sslrootcert=...), by the same
-- names, where tls has none. Returns { ca = pem, ... } or nil (none).
local TLS_PEM = { ca = "CERTIFICATE", cert = "CERTIFICATE", key = "PRIVATE KEY",
                  crl = "X509 CRL" }
local function tls_of(c, base, st, allowed, paths)
  local raw = c.tls
  if raw == nil and not next(paths or {}) then return nil end
  local tbase = base .. ".tls"
  if raw ~= nil and (type(raw) ~= "table" or getmetatable(raw) == json.array_mt) then
    return nil -- the schema says so
  end
  raw = raw or {}
  local out, any = {}, false
  for _, k in ipairs({ "ca", "cert", "key", "crl" }) do
    local v, path = raw[k], child(tbase, k)
    if v == nil and paths and paths[k] then v, path = paths[k], base .. ".url" end
    if v ~= nil and allowed[k] and type(v) == "string" and v ~= "" then
      local text, err, file
      if k == "ca" and v == "system" then
        local F = require("weir._ffi")
        file = F.ffi.string(F.C.weir_ffi_tls_default_ca())
        text, err = read_config_file(st, file, false)
      else
        file = v
        text, err = read_config_file(st, v, k == "cert" or k == "key")
      end
      if not text then
        st.add(path, format("cannot read %s file %q: %s", k, file, err))
      elseif not find(text, "-----BEGIN [%u%d ]*" .. TLS_PEM[k] .. "-----") then
        st.add(path, format("%s file %q holds no PEM %s", k, file, TLS_PEM[k]:lower()))
      else
        out[k], any = text, true
        if k == "key" then st.secrets[text] = true end
      end
    end
  end
  if (raw.cert ~= nil or (paths and paths.cert)) ~= (raw.key ~= nil or (paths and paths.key)) then
    st.add(tbase, "cert and key go together (a client certificate and its private key)")
  end
  return any and out or nil
end

-- The field readers a connector's normalize(name, raw, base, f) uses:
-- f.st (errors: f.st.add(path, message); secrets), f.child(base, key),
-- f.int_in, f.ms_of, f.bytes_of, f.pool_of, f.breaker_of, f.url_of,
-- f.url_error, f.keep_url_password, f.pick, f.password_of, f.str_field,
-- f.tls_of.
local function field_readers(st)
  return { st = st, child = child, int_in = int_in, ms_of = ms_of, bytes_of = bytes_of,
           pool_of = pool_of, breaker_of = breaker_of, url_of = url_of,
           url_error = url_error, keep_url_password = keep_url_password, pick = pick,
           password_of = password_of, str_field = str_field, tls_of = tls_of }
end

---------------------------------------------------------------------------
-- Config objects
---------------------------------------------------------------------------

local Config = {}
Config.__index = Config

--- The secrets of this config, longest first (a fresh list).
function Config:secrets() return M.secrets(self) end

--- text with this config's secrets and any URL password masked.
function Config:redact(text) return M.redact(self, text) end

--- The connection called name, or nil, message.
function Config:connection(name)
  local c = self.connections[name]
  if c then return c end
  local names = {}
  for n in pairs(self.connections) do names[#names + 1] = n end
  sort(names)
  return nil, format("unknown connection %s (%s)", util.show(name),
                     #names > 0 and format("%s defines %s", M.where(self), concat(names, ", "))
                     or "none defined: " .. M.where(self))
end

local function new_config(file, dir, secrets)
  local cfg = setmetatable({ file = file, dir = dir, connections = {}, secret_files = {} },
                           Config)
  secrets_of[cfg] = secrets
  return cfg
end

local function is_readable(p)
  local F = require("weir._ffi")
  local kind = F.C.weir_ffi_path_kind(p)
  if kind == F.C.WEIR_KIND_DIR then return nil, p .. ": is a directory" end
  if kind == F.C.WEIR_KIND_OTHER then return nil, p .. ": not a regular file" end
  local f, err = io.open(p, "rb")
  if not f then return nil, err end
  local _, rerr = f:read(0)
  f:close()
  if rerr then return nil, p .. ": " .. tostring(rerr) end
  return true
end

--- Where the config is: opts.path (from --config) first, then the
-- environment variable WEIR_CONFIG, then weir.yaml in opts.search (the
-- pipeline's folder; default opts.cwd, else the current directory) or the
-- nearest folder above it that has one, up to the top of a git checkout
-- (a folder with .git) or /. Relative paths are taken from opts.cwd when
-- given. opts.getenv replaces os.getenv. Returns the path; nil, nil,
-- searched (the folders looked in, nearest first) when there is no config
-- at all; nil, message when a given path is not a readable file.
function M.find(opts)
  opts = opts or {}
  local getenv = opts.getenv or os.getenv
  local cwd = opts.cwd
  local function resolve(p)
    if cwd and sub(p, 1, 1) ~= "/" then return util.join(cwd, p) end
    return p
  end
  local given, from = opts.path, "--config"
  if given == nil then
    given, from = getenv("WEIR_CONFIG"), "WEIR_CONFIG"
    if given == "" then given = nil end
  end
  if given ~= nil then
    if type(given) ~= "string" or given == "" then
      return nil, format("config file from %s: expected a path", from)
    end
    local p = resolve(given)
    local ok, err = is_readable(p)
    if not ok then return nil, format("config file from %s: %s", from, tostring(err)) end
    return p
  end
  local F = require("weir._ffi")
  local dir = pipeline.abspath(resolve(opts.search or "."))
  local searched = {}
  while true do
    searched[#searched + 1] = dir
    local p = util.join(dir, "weir.yaml")
    local kind = F.C.weir_ffi_path_kind(p)
    if kind == F.C.WEIR_KIND_OTHER or kind == F.C.WEIR_KIND_DIR then
      return nil, p .. ": not a regular file"
    end
    local f = io.open(p, "rb")
    if f then f:close(); return p end
    if dir == "/" or F.C.weir_ffi_path_kind(util.join(dir, ".git")) ~= F.C.WEIR_KIND_NONE then
      break
    end
    dir = util.dirname(dir)
    if dir == "" then dir = "/" end
  end
  return nil, nil, searched
end

--- Load and check the config in path; path nil gives an empty config.
-- opts.getenv(name) replaces os.getenv for ${env:NAME} (tests use it).
-- Returns cfg, or nil, errors: a list of strings "FILE:LINE: path:
-- message" (LINE when known), with errors.file set; no message contains a
-- secret.
function M.load(path, opts)
  opts = opts or {}
  if path ~= nil and type(path) ~= "string" then
    error("weir.config.load: bad 'path' (string expected, got " .. type(path) .. ")", 2)
  end
  local secrets = {}
  if path == nil then return new_config(nil, nil, {}) end

  local errs, lines = {}, nil
  local st = {
    secrets = secrets, getenv = opts.getenv or os.getenv,
    dir = util.dirname(pipeline.abspath(path)),
    failed = {},        -- stands for a string whose expansion failed
    failed_paths = {},  -- their paths: no other error is reported there
    substituted = {},   -- paths of strings with a reference expanded
    files = {},         -- canonical paths of the ${file:} files read
  }
  function st.add(p, msg)
    if not st.failed_paths[p] then errs[#errs + 1] = { path = p, message = msg } end
  end
  local function finish()
    local list = sorted_secrets(secrets)
    document.locate(errs, lines)
    local out, dup = { file = path }, {}
    for _, e in ipairs(errs) do
      local where = path .. (e.line and ":" .. e.line or "")
      local p = e.path ~= "" and e.path .. ": " or ""
      local msg = redact_with(list, where .. ": " .. p .. e.message)
      -- a schema's allOf branches can say the same thing twice
      if not dup[msg] then
        dup[msg] = true
        out[#out + 1] = msg
      end
    end
    return nil, out
  end

  local source, rerr = document.read(path)
  if not source then
    -- io.open's message starts with the path itself
    local reason = tostring(rerr)
    if sub(reason, 1, #path + 2) == path .. ": " then reason = sub(reason, #path + 3) end
    st.add("", "cannot read: " .. reason)
    return finish()
  end
  local doc, l = document.decode(source, "yaml", path)
  if doc == nil then
    -- the decoder quotes a scalar that does not match its tag; drop it
    local msg = l:gsub('value ".*" does not match tag', "value does not match tag")
    return nil, { file = path, mask_urls(msg) }
  end
  lines = l
  if doc == json.null then doc = {} end
  if type(doc) ~= "table" or getmetatable(doc) == json.array_mt then
    st.add("", "expected a mapping at the top level")
    return finish()
  end
  if doc.connections == json.null then doc.connections = {} end

  expand_tree(doc, "", st, false)

  -- semantic checks; a schema error on the same path is dropped when it
  -- is about the value (the semantic message is the clearer one)
  local cfg = new_config(path, st.dir, secrets)
  cfg.secret_files = st.files
  local conns = type(doc.connections) == "table" and doc.connections or {}
  for name, c in pairs(conns) do
    local base = child("connections", tostring(name))
    if type(c) == "table" and type(c.type) == "string" and getmetatable(c) ~= json.array_mt then
      local conn
      local connector = connectors.get(c.type)
      if connector and connector.normalize then
        conn = connector.normalize(name, c, base, field_readers(st))
      else
        st.add(base .. ".type", format("unknown connection type %s (expected %s)",
                                       util.show(c.type), concat(connectors.types(), " or ")))
      end
      if conn then cfg.connections[name] = conn end
    end
  end
  if type(doc.metadata_url) == "string" then
    -- any scheme (or none: a plain path); only its password matters here
    local u = M.parse_url(doc.metadata_url)
    if u then keep_url_password(u, st) end
    cfg.metadata_url = doc.metadata_url
  end

  serve_section(doc, cfg, st)
  if doc.openlineage ~= nil then
    cfg.openlineage = require("weir.openlineage").normalize(doc.openlineage, st.dir, st.add)
  end
  -- folders of the team's own templates (weir.templates), pinned by the
  -- content hashes in weir.lock beside this file
  cfg.templates = {}
  if type(doc.templates) == "table" then
    for _, d in ipairs(doc.templates) do
      if type(d) == "string" and d ~= "" then
        cfg.templates[#cfg.templates + 1] = d:sub(1, 1) == "/" and d or util.join(st.dir, d)
      end
    end
  end

  -- the schema sees failed expansions as empty strings
  local function unmark(t)
    for k, v in pairs(t) do
      if v == st.failed then t[k] = "" elseif type(v) == "table" then unmark(v) end
    end
  end
  unmark(doc)
  local _, serrs = document.validator("weir/schemas/config.schema.json"):validate(doc)
  local structural = { required = true, additionalProperties = true, propertyNames = true }
  document.merge(errs, serrs, function(e) return structural[e.keyword] end)
  if #errs > 0 then return finish() end

  local list = sorted_secrets(secrets)
  for _, conn in pairs(cfg.connections) do secrets_of[conn] = list end
  return cfg
end

--- weir serve's settings (M.SERVE holds the defaults): durations in
-- seconds, sizes in bytes, pipelines folders absolute.
M.SERVE = { listen = "127.0.0.1:8080", max_active_runs = 16, pipeline_max_active_runs = 4,
            drain = 30, max_body = 1 * MB, idempotency_retention = 86400,
            max_header = 8 * KB, max_connections = 1024, max_connections_per_address = 64,
            idle_timeout = 30,
            rate_limit = { per_principal = { rate = 1000, burst = 2000 },
                           per_address = { rate = 1000, burst = 2000 } },
            trusted_proxies = {}, cors_origins = {} }

serve_section = function(doc, cfg, st)
  local serve_tls = function(given, sst)
    local t = tls_of(given, "serve", sst, { cert = true, key = true })
    if t and not (t.cert and t.key) then return nil end
    return t
  end
  cfg.pipelines = {}
  if type(doc.pipelines) == "table" then
    for i, d in ipairs(doc.pipelines) do
      if type(d) == "string" and d ~= "" then
        cfg.pipelines[i] = d:sub(1, 1) == "/" and d or util.join(st.dir, d)
      end
    end
  end
  local sv = {}
  for k, v in pairs(M.SERVE) do sv[k] = v end
  cfg.serve = sv
  local given = type(doc.serve) == "table" and doc.serve or {}
  local function int(k, lo, hi)
    local v = given[k]
    if v == nil then return end
    local n = tonumber(v)
    if not n or n ~= floor(n) or n < lo or n > hi then
      st.add("serve." .. k, format("expected an integer %d..%d, got %s", lo, hi, util.show(v)))
    else
      sv[k] = n
    end
  end
  int("workers", 1, 256)
  int("max_active_runs", 1, 100000)
  int("pipeline_max_active_runs", 1, 100000)
  int("max_connections", 1, 100000)
  int("max_connections_per_address", 1, 100000)
  for _, k in ipairs({ "drain", "idempotency_retention", "idle_timeout" }) do
    if given[k] ~= nil then
      local v, err = util.duration(given[k])
      if v then sv[k] = v else st.add("serve." .. k, err) end
    end
  end
  for _, k in ipairs({ "max_body", "max_header" }) do
    if given[k] ~= nil then
      local v, err = util.size(given[k])
      if v and v >= 1024 then sv[k] = v
      else st.add("serve." .. k, err or "expected at least 1KB") end
    end
  end
  if type(given.listen) == "string" then
    if not M.parse_listen(given.listen) then
      st.add("serve.listen", format("expected ADDR:PORT or [IPv6]:PORT, got %s",
                                    util.show(given.listen)))
    else
      sv.listen = given.listen
    end
  end
  if type(given.rate_limit) == "table" then
    local rl = { per_principal = sv.rate_limit.per_principal,
                 per_address = sv.rate_limit.per_address }
    for _, k in ipairs({ "per_principal", "per_address" }) do
      local b = given.rate_limit[k]
      if type(b) == "table" then
        rl[k] = { rate = tonumber(b.rate) or rl[k].rate, burst = tonumber(b.burst) or rl[k].burst }
      end
    end
    sv.rate_limit = rl
  end
  if type(given.trusted_proxies) == "table" then
    local ok, perr = require("weir.limits").proxies(given.trusted_proxies)
    if ok then sv.trusted_proxies = given.trusted_proxies
    else st.add("serve.trusted_proxies", tostring(perr)) end
  end
  if type(given.cors_origins) == "table" then sv.cors_origins = given.cors_origins end
  if type(given.tls) == "table" then
    sv.tls = serve_tls(given, st)
  end
  local jwt = type(given.jwt) == "table" and given.jwt or nil
  if jwt then
    local keys = type(jwt.keys) == "table" and jwt.keys or {}
    local n = 0
    for kid, secret in pairs(keys) do
      n = n + 1
      if type(secret) == "string" and #secret < 32 then
        st.add("serve.jwt.keys." .. tostring(kid), "a signing key needs at least 32 bytes")
      end
    end
    if n == 0 then st.add("serve.jwt.keys", "at least one signing key is needed") end
    if jwt.current ~= nil and keys[jwt.current] == nil then
      st.add("serve.jwt.current", format("no key %s in serve.jwt.keys", util.show(jwt.current)))
    end
    local ttl, terr = util.duration(jwt.ttl or 3600)
    if not ttl then st.add("serve.jwt.ttl", terr) end
    local cur = jwt.current
    if cur == nil then for kid in pairs(keys) do cur = cur and (kid < cur and kid or cur) or kid end end
    sv.jwt = { keys = keys, current = cur, issuer = jwt.issuer or "weir",
               audience = jwt.audience or "weir", ttl = ttl or 3600 }
  end
end

--- ADDR:PORT or [IPv6]:PORT: address, port; nil when malformed.
function M.parse_listen(s)
  local a, p = s:match("^%[([%x:.]+)%]:(%d+)$")
  if not a then a, p = s:match("^([%d.]+):(%d+)$") end
  p = tonumber(p)
  if not a or not p or p > 65535 then return nil end
  return a, p
end

--- find + load: the config the command line asks for (see M.find), or an
-- empty one. Returns cfg, or nil, errors (a list of strings).
function M.open(opts)
  local path, err, searched = M.find(opts)
  if err then return nil, { err } end
  local cfg, errs = M.load(path, opts)
  if cfg and not path then cfg.searched = searched end
  return cfg, errs
end

--- Where a config is, said in an error: its file, or that none was found
-- (and where weir looked).
function M.where(cfg)
  if cfg.file then return cfg.file end
  local s = cfg.searched
  if s and s[1] then
    return format("no weir.yaml (looked in %s%s)", s[1], #s > 1 and " and the folders above"
                  or "")
  end
  return "no weir.yaml"
end

--- The secrets of a loaded config, longest first: every value from
-- ${env:} or ${file:}, every password field and every URL password
-- (decoded and as written). A fresh list.
function M.secrets(cfg)
  local set = secrets_of[cfg]
  if not set then
    error("weir.config.secrets: bad 'cfg' (a loaded config expected)", 2)
  end
  return sorted_secrets(set)
end

--- text with every secret of cfg replaced by "***" (plain substrings,
-- longest first) and the password of every "scheme://user:pw@" masked.
-- cfg may be nil (URL masking only).
--- A function(text) that redacts as M.redact(cfg, text) does, for text
-- that passes it often (every task result): the secrets are listed once.
-- Values that are not strings are returned as they are.
function M.redactor(cfg)
  local list = M.secrets(cfg)
  return function(text)
    if type(text) ~= "string" then return text end
    return redact_with(list, text)
  end
end

function M.redact(cfg, text)
  local tt = type(text)
  if tt == "number" then
    text = tostring(text)
  elseif tt ~= "string" then
    error("weir.config.redact: bad 'text' (string expected, got " .. tt .. ")", 2)
  end
  if cfg == nil then return mask_urls(text) end
  return redact_with(M.secrets(cfg), text)
end

--- A one-line description safe to log: "postgres://weir@127.0.0.1:5432/db",
-- "redis://127.0.0.1:6379/0". Never the password; any part that is a
-- secret (e.g. a user from ${env:}) shows as "***".
function M.describe(conn)
  if type(conn) ~= "table" then
    error("weir.config.describe: bad 'conn' (table expected, got " .. type(conn) .. ")", 2)
  end
  local host = tostring(conn.host or "")
  if find(host, ":", 1, true) then host = "[" .. host .. "]" end
  local user = conn.user and tostring(conn.user) .. "@" or ""
  local db = conn.database ~= nil and tostring(conn.database) or ""
  local s = format("%s://%s%s:%s/%s", tostring(conn.type), user, host, tostring(conn.port), db)
  return redact_with(secrets_of[conn] or {}, s)
end

return M
