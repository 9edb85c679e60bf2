-- weir.hooks: signed webhooks: the signature header, its verification
-- with a time window and a replay cache, and the mapping of a JSON body to
-- a pipeline's params.
--
-- Header `Weir-Signature: t=UNIX,v1=HEX[,v1=HEX...]`, HEX the lowercase
-- hex of HMAC-SHA256(secret, t .. "." .. body) (the Stripe scheme). No
-- HTTP and no store here: the server passes the header, the raw body and
-- the clock, and may give the verifier a `claim` function that records a
-- signature in the store. Refusals are short fixed reasons, never text
-- taken from the request. The choices are explained in docs/adr/0022.
local auth = require("weir.auth")
local json = require("weir.json")
local util = require("weir.util")
local pipeline = require("weir.pipeline")

local find, floor, format, sub = string.find, math.floor, string.format, string.sub
local getmetatable, ipairs, pairs, setmetatable, tonumber, type =
  getmetatable, ipairs, pairs, setmetatable, tonumber, type

local M = {}

--- The request header that carries the signature.
M.HEADER = "Weir-Signature"
--- The largest header accepted, in bytes.
M.HEADER_MAX = 1024
--- The most comma-separated entries a header may have (known or not).
M.ENTRIES_MAX = 8
--- Default seconds a timestamp may differ from the server's clock.
M.WINDOW = 300
--- Default number of signatures the verifier remembers in memory.
M.MAX_SEEN = 10000
--- Nesting limit of a webhook body.
M.BODY_DEPTH = 64

local function mac(secret, t, body)
  return auth.hex(auth.hmac_sha256(secret, t .. "." .. body))
end

--- The header value for body sent at UNIX time t (an integer) under
-- secret: "t=UNIX,v1=HEX".
function M.sign(secret, t, body)
  if type(secret) ~= "string" or secret == "" then
    error("weir.hooks.sign: bad 'secret' (non-empty string expected)", 2)
  end
  if type(t) ~= "number" or t < 0 or t ~= floor(t) or t >= 1e12 then
    error("weir.hooks.sign: bad 't' (UNIX seconds expected)", 2)
  end
  local ts = format("%d", t)
  return "t=" .. ts .. ",v1=" .. mac(secret, ts, body)
end

--- Parse a header value strictly. Returns the timestamp text and the list
-- of v1 signatures, or nil and a reason. Entries are `key=value`
-- separated by single commas, no spaces; `t` once, 1..12 digits; `v1`
-- once or more, 64 lowercase hex digits each; other keys (`v0`, a future
-- `v2`) are ignored but count towards ENTRIES_MAX.
function M.parse(header)
  if header == nil or header == "" then return nil, "missing signature" end
  if type(header) ~= "string" or #header > M.HEADER_MAX then
    return nil, "malformed signature"
  end
  local t, sigs, n = nil, {}, 0
  local pos = 1
  while true do
    n = n + 1
    if n > M.ENTRIES_MAX then return nil, "malformed signature" end
    local stop = find(header, ",", pos, true)
    local item = sub(header, pos, (stop or 0) - 1)
    local k, v = item:match("^([%w_]+)=([^%s=]+)$")
    if not k then return nil, "malformed signature" end
    if k == "t" then
      if t or not v:match("^%d+$") or #v > 12 then return nil, "malformed signature" end
      t = v
    elseif k == "v1" then
      if #v ~= 64 or v:match("[^0-9a-f]") then return nil, "malformed signature" end
      sigs[#sigs + 1] = v
    end
    if not stop then break end
    pos = stop + 1
  end
  if not t or #sigs == 0 then return nil, "malformed signature" end
  return t, sigs
end

---------------------------------------------------------------------------
-- Replay cache: signature -> timestamp, in buckets of timestamps
---------------------------------------------------------------------------

local Verifier = {}
Verifier.__index = Verifier

--- A verifier. opts: `window` (seconds or a duration text, default 300),
-- `max_seen` (signatures kept in memory, default 10000), `claim` (an
-- optional function(sigs, t) -> true when none of the signatures was
-- recorded before and they now are; false when one was: the store's
-- check, shared by every server on it).
function M.verifier(opts)
  opts = opts or {}
  local window = opts.window == nil and M.WINDOW or util.duration(opts.window)
  if not window or window < 1 then
    error("weir.hooks.verifier: bad 'window' (a duration of at least 1s expected)", 2)
  end
  local max_seen = opts.max_seen or M.MAX_SEEN
  if type(max_seen) ~= "number" or max_seen < 1 or max_seen ~= floor(max_seen) then
    error("weir.hooks.verifier: bad 'max_seen' (positive integer expected)", 2)
  end
  if opts.claim ~= nil and type(opts.claim) ~= "function" then
    error("weir.hooks.verifier: bad 'claim' (function expected)", 2)
  end
  -- about 64 buckets span a window; a bucket is forgotten as a whole
  local width = math.max(1, math.ceil(window / 64))
  return setmetatable({ window = floor(window), max_seen = max_seen, claim = opts.claim,
                        width = width, sigs = {}, buckets = {}, ids = {}, count = 0 },
                      Verifier)
end

--- True when the verifier remembers the signature sig (64 hex digits).
function Verifier:seen(sig)
  return self.sigs[sig] ~= nil
end

--- How many signatures the verifier remembers.
function Verifier:size()
  return self.count
end

-- Drop the lowest bucket (its signatures are the oldest).
function Verifier:drop_lowest()
  local id = self.ids[1]
  local b = self.buckets[id]
  for i = 1, #b do self.sigs[b[i]] = nil end
  self.count = self.count - #b
  self.buckets[id] = nil
  table.remove(self.ids, 1)
end

-- Forget the signatures whose timestamp left the window, then, while the
-- cache is over max_seen, the ones with the oldest timestamps.
function Verifier:evict(now)
  local expired = floor((now - self.window) / self.width)
  while self.ids[1] and self.ids[1] < expired do self:drop_lowest() end
  while self.count > self.max_seen do
    local id = self.ids[1]
    local b = self.buckets[id]
    local sig = b[#b]
    b[#b] = nil
    self.sigs[sig] = nil
    self.count = self.count - 1
    if #b == 0 then
      self.buckets[id] = nil
      table.remove(self.ids, 1)
    end
  end
end

--- Remember signature sig of timestamp t (UNIX seconds), e.g. one read
-- back from the store when the server starts. now: the clock (seconds).
function Verifier:remember(sig, t, now)
  t = tonumber(t)
  if self.sigs[sig] == nil then
    local id = floor(t / self.width)
    local b = self.buckets[id]
    if not b then
      b = {}
      self.buckets[id] = b
      local ids, i = self.ids, #self.ids
      while i > 0 and ids[i] > id do i = i - 1 end
      table.insert(ids, i + 1, id)
    end
    b[#b + 1] = sig
    self.sigs[sig] = t
    self.count = self.count + 1
  end
  self:evict(now or t)
end

--- Check a request: secrets (a string, or a list of them: any may have
-- signed, for rotation), the header value, the raw body and now (UNIX
-- seconds). Returns true, or false and one of "missing signature",
-- "malformed signature", "timestamp outside the window", "bad signature",
-- "replayed". An accepted request's signatures (its message signed under
-- every given secret) are remembered, so the same message is refused
-- again, whichever of its v1 entries a replay keeps.
function Verifier:check(secrets, header, body, now)
  if type(secrets) == "string" then secrets = { secrets } end
  if type(secrets) ~= "table" or #secrets == 0 then
    error("weir.hooks.check: bad 'secrets' (a string or a list of strings expected)", 2)
  end
  if type(body) ~= "string" then
    error("weir.hooks.check: bad 'body' (string expected)", 2)
  end
  now = now or os.time()
  local ts, sigs = M.parse(header)
  if not ts then return false, sigs end
  local t = tonumber(ts)
  if t < now - self.window or t > now + self.window then
    return false, "timestamp outside the window"
  end
  local expected, ok = {}, false
  for i, secret in ipairs(secrets) do
    if type(secret) ~= "string" or secret == "" then
      error("weir.hooks.check: bad 'secrets' (non-empty strings expected)", 2)
    end
    local e = mac(secret, ts, body)
    expected[i] = e
    for _, s in ipairs(sigs) do
      -- every pair is compared: the time does not tell which matched
      if auth.equal(e, s) then ok = true end
    end
  end
  if not ok then return false, "bad signature" end
  for _, e in ipairs(expected) do
    if self.sigs[e] then return false, "replayed" end
  end
  if self.claim and not self.claim(expected, t) then return false, "replayed" end
  for _, e in ipairs(expected) do self:remember(e, t, now) end
  return true
end

---------------------------------------------------------------------------
-- JSON pointers (RFC 6901) and params
---------------------------------------------------------------------------

--- True when p is a JSON pointer: "" or "/"-separated reference tokens
-- in which "~" is followed by "0" or "1" only.
function M.valid_pointer(p)
  if type(p) ~= "string" then return false end
  if p == "" then return true end
  if sub(p, 1, 1) ~= "/" then return false end
  return not find(p, "~[^01]") and not find(p, "~$")
end

local function unescape(token)
  return (token:gsub("~1", "/"):gsub("~0", "~"))
end

--- The value at pointer p in the decoded JSON document doc, or nil when
-- there is none (an array index is decimal digits without leading zero,
-- "-" never names an element). Raises on an invalid pointer.
function M.lookup(doc, p)
  if not M.valid_pointer(p) then error("weir.hooks.lookup: invalid JSON pointer", 2) end
  if p == "" then return doc end
  local v = doc
  for token in (sub(p, 2) .. "/"):gmatch("([^/]*)/") do
    if type(v) ~= "table" then return nil end
    if getmetatable(v) == json.array_mt then
      if not token:match("^0$") and not token:match("^[1-9]%d*$") then return nil end
      v = v[tonumber(token) + 1]
    else
      v = v[unescape(token)]
    end
    if v == nil then return nil end
  end
  return v
end

local function escape(name)
  return (name:gsub("~", "~0"):gsub("/", "~1"))
end

local JSON_TYPE = { string = "string", integer = "number", number = "number",
                    boolean = "boolean", date = "string", datetime = "string" }

local function kind_of(v)
  if v == json.null then return "null" end
  if type(v) == "table" then
    return getmetatable(v) == json.array_mt and "array" or "object"
  end
  return type(v)
end

--- The params of a run from a webhook body. decls: the pipeline's params
-- declarations (name -> { type, default, enum }); body: the raw body text;
-- mapping: the webhook's `params` (name -> JSON pointer into the body), or
-- nil: then the body's top-level members are the params, and a member
-- that is no declared param is refused. A value must have the declared
-- JSON type (a string is no integer); absent, the declared default
-- applies. Returns the params, or nil and a list of { pointer, detail }
-- (pointer: where in the body, the member the param would be at when
-- absent).
function M.params(decls, body, mapping)
  decls = decls or {}
  local doc, err
  if sub(body, 1, 3) == "\239\187\191" then
    err = "a byte order mark"
  else
    doc, err = json.decode(body, { max_depth = M.BODY_DEPTH })
  end
  if doc == nil then
    return nil, { { pointer = "", detail = "not JSON: " .. err } }
  end
  if kind_of(doc) ~= "object" then
    return nil, { { pointer = "", detail = "expected a JSON object, got " .. kind_of(doc) } }
  end
  if auth.duplicate_member(body) then
    return nil, { { pointer = "", detail = "a member name appears twice in one object" } }
  end
  local errs, given, where = {}, {}, {}
  local function add(pointer, detail) errs[#errs + 1] = { pointer = pointer, detail = detail } end
  if mapping then
    for name, p in pairs(mapping) do
      where[name] = p
      if decls[name] == nil then
        add(p, format("param %q is not declared by the pipeline", name))
      else
        given[name] = M.lookup(doc, p)
      end
    end
  else
    for k, v in pairs(doc) do
      where[k] = "/" .. escape(k)
      if decls[k] == nil then
        add(where[k], "unknown field (not a param of the pipeline)")
      else
        given[k] = v
      end
    end
  end
  local values = {}
  for name, v in pairs(given) do
    local p = decls[name]
    local want = JSON_TYPE[p.type]
    -- a list param: a JSON array of items, or a comma-separated string
    local kind = kind_of(v)
    if p.list and (kind == "array" or kind == "string") then kind = want end
    if kind ~= want then
      add(where[name], format("param %q: expected %s%s, got %s", name,
                              p.list and "a list of " or "", p.type, kind_of(v)))
    else
      local cv, why = pipeline.coerce_param(p, v)
      if cv == nil then
        add(where[name], format("param %q: %s", name, why))
      else
        values[name] = cv
      end
    end
  end
  for name, p in pairs(decls) do
    if given[name] == nil and p.default == nil then
      add(where[name] or ("/" .. escape(name)), format("param %q is required (no default)", name))
    end
  end
  local out, rerr
  if #errs == 0 then
    out, rerr = pipeline.resolve_params({ def = { params = decls } }, values)
    if not out then add("", rerr) end
  end
  if #errs > 0 then
    table.sort(errs, function(a, b) return a.pointer < b.pointer end)
    return nil, errs
  end
  return out
end

---------------------------------------------------------------------------
-- The pipeline's `triggers.webhook`
---------------------------------------------------------------------------

--- The kind ("env" or "file") and argument of a secret reference
-- "${env:NAME}" or "${file:PATH}", or nil when s is not exactly one.
function M.secret_ref(s)
  if type(s) ~= "string" then return nil end
  local name = s:match("^%${env:([A-Za-z_][A-Za-z0-9_]*)}$")
  if name then return "env", name end
  local path = s:match("^%${file:([^}]+)}$")
  if path then return "file", path end
  return nil
end

--- Semantic checks of a pipeline's triggers.webhook (wh) against its
-- params declarations; add(path, message) for each problem. The secret's
-- value is never repeated in a message.
function M.check_config(wh, decls, add)
  if type(wh) ~= "table" then return end
  if type(wh.secret) == "string" and not M.secret_ref(wh.secret) then
    add("triggers.webhook.secret", "must be a reference ${env:NAME} or ${file:PATH}"
        .. " (a secret is never written in a pipeline file)")
  end
  if wh.window ~= nil then
    local w, werr = util.duration(wh.window)
    if not w then
      add("triggers.webhook.window", werr)
    elseif w < 1 or w > 86400 then
      add("triggers.webhook.window", "must be between 1s and 1d")
    end
  end
  if type(wh.params) == "table" then
    local names = {}
    for name in pairs(wh.params) do names[#names + 1] = tostring(name) end
    table.sort(names)
    for _, name in ipairs(names) do
      local p = wh.params[name]
      local path = "triggers.webhook.params." .. name
      if type(decls) ~= "table" or decls[name] == nil then
        add(path, format("param %q is not declared in params", name))
      elseif type(p) == "string" and not M.valid_pointer(p) then
        add(path, format("not a JSON pointer (RFC 6901: \"\" or \"/a/b\", \"~0\" for ~, "
                         .. "\"~1\" for /), got %s", util.show(p)))
      end
    end
  end
end

return M
