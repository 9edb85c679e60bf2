-- weir.auth: authentication building blocks for `weir serve`: password
-- hashes, API keys, JWT (HS256), base64url and the roles.
--
-- Trusted library (it uses the FFI through weir._ffi); the primitives are
-- OpenSSL's libcrypto (runtime/hash.c). No HTTP, no store: the server asks
-- these functions and keeps what they return. Refusals are short fixed
-- reasons ("expired", "bad signature"): never the token, a key, a password
-- or any text taken from the token, so a reason can go to a log or a
-- response as it is. The choices are explained in docs/adr/0018.
local F = require("weir._ffi")
local json = require("weir.json")
local bit = require("bit")

local ffi, C = F.ffi, F.C
local band, rshift = bit.band, bit.rshift
local byte, char, concat, find, format, match, sub =
  string.byte, string.char, table.concat, string.find, string.format,
  string.match, string.sub
local error, floor, getmetatable, pairs, rawget, setmetatable, tonumber, type =
  error, math.floor, getmetatable, pairs, rawget, setmetatable, tonumber, type
local OK = C.WEIR_OK

local M = {}

---------------------------------------------------------------------------
-- Primitives
---------------------------------------------------------------------------

local out32 = ffi.new("uint8_t[32]")
local kdf_out = ffi.new("uint8_t[64]")

--- SHA-256 of s as 32 raw bytes.
function M.sha256(s)
  assert(C.weir_ffi_sha256(s, #s, out32) == OK, "sha256 failed")
  return ffi.string(out32, 32)
end

--- HMAC-SHA256 of data under key as 32 raw bytes.
function M.hmac_sha256(key, data)
  assert(C.weir_ffi_hmac_sha256(key, #key, data, #data, out32) == OK,
         "hmac-sha256 failed")
  return ffi.string(out32, 32)
end

--- True when the strings a and b are equal, in a time that depends on
-- their length only (a length difference is not hidden).
local function equal(a, b)
  if #a ~= #b then return false end
  return C.weir_ffi_mem_equal(a, b, #a) == OK
end
M.equal = equal

--- n cryptographically random bytes (raises when libcrypto cannot give
-- them: nothing may go on with weak randomness).
local function random(n)
  local buf = ffi.new("uint8_t[?]", n)
  assert(C.weir_ffi_random(buf, n) == OK, "no random bytes from libcrypto")
  return ffi.string(buf, n)
end
M.random = random

-- Raises unless v is an integer in 1..max (the C side takes fixed-width
-- integers, which would silently cut a larger number).
local function count(v, max, what, fn)
  if type(v) ~= "number" or v < 1 or v > max or v ~= floor(v) then
    error(format("weir.auth.%s: bad '%s' (integer 1..%d expected)", fn, what, max), 3)
  end
end

--- PBKDF2-HMAC-SHA256 (RFC 8018): n bytes (1..64) of pw and salt with
-- iterations. Returns the bytes, or nil and an error.
function M.pbkdf2_sha256(pw, salt, iterations, n)
  count(iterations, 2 ^ 31 - 1, "iterations", "pbkdf2_sha256")
  count(n, 64, "n", "pbkdf2_sha256")
  local ok, err = F.check(C.weir_ffi_pbkdf2_sha256(pw, #pw, salt, #salt,
    iterations, kdf_out, n, F.errbuf, F.errlen))
  if not ok then return nil, err end
  return ffi.string(kdf_out, n)
end

--- scrypt (RFC 7914): n bytes (1..64) of pw and salt with cost N, block
-- size r and parallelism p, using at most maxmem bytes. Returns the bytes,
-- or nil and an error.
function M.scrypt(pw, salt, N, r, p, maxmem, n)
  count(N, 2 ^ 40, "N", "scrypt")
  count(r, 2 ^ 31 - 1, "r", "scrypt")
  count(p, 2 ^ 31 - 1, "p", "scrypt")
  count(maxmem, 2 ^ 40, "maxmem", "scrypt")
  count(n, 64, "n", "scrypt")
  local ok, err = F.check(C.weir_ffi_scrypt(pw, #pw, salt, #salt, N, r, p,
    maxmem, kdf_out, n, F.errbuf, F.errlen))
  if not ok then return nil, err end
  return ffi.string(kdf_out, n)
end

--- Lowercase hex of the bytes of s.
local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end
M.hex = hex

---------------------------------------------------------------------------
-- base64url (RFC 4648 section 5), without padding
---------------------------------------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local enc, dec = {}, {}
for i = 1, 64 do
  enc[i - 1] = sub(B64, i, i)
  dec[byte(B64, i)] = i - 1
end

--- base64url of s, no padding.
function M.b64url_encode(s)
  local out, n, len = {}, 0, #s
  local full = len - len % 3
  for i = 1, full, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = a * 65536 + b * 256 + c
    n = n + 1
    out[n] = enc[rshift(v, 18)] .. enc[band(rshift(v, 12), 63)]
      .. enc[band(rshift(v, 6), 63)] .. enc[band(v, 63)]
  end
  local rest = len - full
  if rest == 1 then
    local a = byte(s, len)
    out[n + 1] = enc[rshift(a, 2)] .. enc[band(a, 3) * 16]
  elseif rest == 2 then
    local a, b = byte(s, len - 1, len)
    local v = a * 256 + b
    out[n + 1] = enc[rshift(v, 10)] .. enc[band(rshift(v, 4), 63)]
      .. enc[band(v, 15) * 4]
  end
  return concat(out)
end

--- The bytes of base64url text s, or nil when s is not canonical
-- base64url: only the 64 letters of the URL-safe alphabet, no padding, no
-- whitespace, a length that is not 1 mod 4, and zero unused bits in the
-- last letter (so every byte string has exactly one encoding).
function M.b64url_decode(s)
  if type(s) ~= "string" then return nil end
  local len = #s
  local rest = len % 4
  if rest == 1 or find(s, "[^A-Za-z0-9_-]") then return nil end
  local out, n = {}, 0
  local full = len - rest
  for i = 1, full, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    local v = dec[a] * 262144 + dec[b] * 4096 + dec[c] * 64 + dec[d]
    n = n + 1
    out[n] = char(rshift(v, 16), band(rshift(v, 8), 255), band(v, 255))
  end
  if rest == 2 then
    local a, b = dec[byte(s, len - 1)], dec[byte(s, len)]
    if band(b, 15) ~= 0 then return nil end
    out[n + 1] = char(a * 4 + rshift(b, 4))
  elseif rest == 3 then
    local a, b, c = dec[byte(s, len - 2)], dec[byte(s, len - 1)], dec[byte(s, len)]
    if band(c, 3) ~= 0 then return nil end
    local v = a * 4096 + b * 64 + c
    out[n + 1] = char(rshift(v, 10), band(rshift(v, 2), 255))
  end
  return concat(out)
end
local b64e, b64d = M.b64url_encode, M.b64url_decode

---------------------------------------------------------------------------
-- Passwords
---------------------------------------------------------------------------

--- The parameters new password hashes get: scrypt with N = 2^14, r = 8,
-- p = 1 (16 MiB and about 50 ms per hash), a 16-byte salt, 32 bytes of
-- hash. A stored hash names its own parameters, so raising these later
-- leaves old hashes valid; `needs_rehash` tells which to replace at the
-- next successful login.
M.PASSWORD = { N = 16384, r = 8, p = 1, salt = 16, len = 32 }
--- Bounds a stored hash's parameters must keep within before it is
-- computed, so a stored hash cannot make one login cost more than this.
M.PASSWORD_LIMITS = { maxmem = 64 * 1024 * 1024, max_p = 16, max_pbkdf2 = 2000000 }
--- The longest password accepted, in bytes.
M.PASSWORD_MAX = 1024

local function check_password(pw)
  if type(pw) ~= "string" then
    error("weir.auth: bad 'password' (string expected, got " .. type(pw) .. ")", 3)
  end
  if pw == "" then return nil, "empty password" end
  if #pw > M.PASSWORD_MAX then return nil, "password longer than " .. M.PASSWORD_MAX .. " bytes" end
  return true
end

--- A stored form of password pw: "scrypt$N$r$p$SALT$HASH" (salt and hash
-- in base64url). opts (optional) may give other scrypt parameters (N, r,
-- p), or `scheme = "pbkdf2-sha256"` with `iterations` (default 600000)
-- for "pbkdf2-sha256$ITERATIONS$SALT$HASH". Returns nil and a reason for
-- an empty or over-long password.
function M.hash_password(pw, opts)
  local ok, why = check_password(pw)
  if not ok then return nil, why end
  local P = M.PASSWORD
  opts = opts or {}
  local salt = random(P.salt)
  if opts.scheme == "pbkdf2-sha256" then
    local iter = opts.iterations or 600000
    local h = assert(M.pbkdf2_sha256(pw, salt, iter, P.len))
    return format("pbkdf2-sha256$%d$%s$%s", iter, b64e(salt), b64e(h))
  elseif opts.scheme ~= nil and opts.scheme ~= "scrypt" then
    error("weir.auth.hash_password: bad 'opts.scheme' (scrypt or pbkdf2-sha256 expected)", 2)
  end
  local N, r, p = opts.N or P.N, opts.r or P.r, opts.p or P.p
  local h = assert(M.scrypt(pw, salt, N, r, p, M.PASSWORD_LIMITS.maxmem, P.len))
  return format("scrypt$%d$%d$%d$%s$%s", N, r, p, b64e(salt), b64e(h))
end

-- The parts of a stored hash, or nil when it is not one weir wrote
-- within PASSWORD_LIMITS.
local function parse_stored(stored)
  if type(stored) ~= "string" then return nil end
  local L = M.PASSWORD_LIMITS
  local N, r, p, salt, h = match(stored,
    "^scrypt%$(%d+)%$(%d+)%$(%d+)%$([%w_-]+)%$([%w_-]+)$")
  if N then
    N, r, p = tonumber(N), tonumber(r), tonumber(p)
    if #stored > 512 or N < 2 or N > 2 ^ 30 or r < 1 or p < 1 or p > L.max_p
      or 128 * r * (N + p + 2) > L.maxmem then
      return nil
    end
    local s, d = b64d(salt), b64d(h)
    if not s or not d or #d < 16 or #d > 64 then return nil end
    return { scheme = "scrypt", N = N, r = r, p = p, salt = s, hash = d }
  end
  local iter
  iter, salt, h = match(stored, "^pbkdf2%-sha256%$(%d+)%$([%w_-]+)%$([%w_-]+)$")
  if iter then
    iter = tonumber(iter)
    local s, d = b64d(salt), b64d(h)
    if #stored > 512 or iter < 1 or iter > L.max_pbkdf2 or not s or not d
      or #d < 16 or #d > 64 then
      return nil
    end
    return { scheme = "pbkdf2-sha256", iterations = iter, salt = s, hash = d }
  end
  return nil
end

-- A hash of the default kind, computed when there is no stored hash so
-- that the time of a login does not say whether the user exists.
local dummy

--- True when password pw matches the stored form; the hashes are
-- compared in constant time. stored nil (no such user, or disabled)
-- costs a hash too and gives false, so timing does not tell which users
-- exist. Returns false and a reason for an empty or over-long password or
-- a stored form weir cannot use ("bad stored hash").
function M.verify_password(pw, stored)
  local ok, why = check_password(pw)
  local h = parse_stored(stored)
  if stored == nil or not ok then
    if not dummy then dummy = parse_stored(M.hash_password("weir dummy password")) end
    h = dummy
    stored = nil
  end
  if not h then return false, "bad stored hash" end
  local got
  if h.scheme == "scrypt" then
    got = M.scrypt(ok and pw or "x", h.salt, h.N, h.r, h.p,
                   M.PASSWORD_LIMITS.maxmem, #h.hash)
  else
    got = M.pbkdf2_sha256(ok and pw or "x", h.salt, h.iterations, #h.hash)
  end
  if not got then return false, "bad stored hash" end
  local same = equal(got, h.hash)
  if not ok then return false, why end
  return same and stored ~= nil
end

--- True when the stored hash was made with other parameters than the
-- current ones (M.PASSWORD, scrypt): replace it after the next
-- successful verify_password.
function M.needs_rehash(stored)
  local h = parse_stored(stored)
  local P = M.PASSWORD
  return not h or h.scheme ~= "scrypt" or h.N ~= P.N or h.r ~= P.r
    or h.p ~= P.p or #h.salt ~= P.salt or #h.hash ~= P.len
end

---------------------------------------------------------------------------
-- API keys
---------------------------------------------------------------------------

-- weir_ID_SECRET: ID is 16 hex digits (64 random bits, the lookup key),
-- SECRET 43 base64url letters (32 random bytes, 256 bits).
local API_KEY = "^weir_(" .. ("%x"):rep(16) .. ")_(" .. ("[A-Za-z0-9_-]"):rep(43) .. ")$"

--- A new API key: the clear key (shown once, never stored), its id (the
-- store's lookup key, safe to show and log) and the hash to store (hex
-- SHA-256 of the secret part). The secret is 256 random bits, so a fast
-- hash is enough: nobody can guess it, whatever the hash costs.
function M.new_api_key()
  local id = hex(random(8))
  local secret = b64e(random(32))
  return { key = "weir_" .. id .. "_" .. secret, id = id, hash = hex(M.sha256(secret)) }
end

--- The id and secret of a clear API key, or nil when text is not one.
function M.parse_api_key(text)
  if type(text) ~= "string" then return nil end
  return match(text, API_KEY)
end

--- True when the clear API key text matches the stored hash (compared in
-- constant time). The caller found stored by the key's id.
function M.verify_api_key(text, stored)
  local id, secret = M.parse_api_key(text)
  if not id or type(stored) ~= "string" then return false end
  return equal(hex(M.sha256(secret)), stored)
end

---------------------------------------------------------------------------
-- JSON for tokens: strict, no duplicate members
---------------------------------------------------------------------------

--- True when some object of the JSON text s (already valid JSON) has the
-- same member name twice, after unescaping ("exp" and "\u0065xp" are the
-- same name): RFC 7515 section 5.2 lets a verifier refuse such text, and
-- a parser that took the first while weir took the last would read
-- another token than weir.
local function duplicate_member(s)
  local stack, top, expect_key = {}, 0, false
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    if c == 34 then -- a string: find its closing quote
      local j = i + 1
      while true do
        local e = find(s, "[\"\\]", j)
        if byte(s, e) == 92 then
          j = e + 2
        else
          j = e
          break
        end
      end
      if expect_key then
        local name = json.decode(sub(s, i, j))
        local names = stack[top]
        if names[name] then return true end
        names[name] = true
        expect_key = false
      end
      i = j + 1
    else
      if c == 123 then -- {
        top = top + 1
        stack[top] = {}
        expect_key = true
      elseif c == 91 then -- [
        top = top + 1
        stack[top] = false
      elseif c == 125 or c == 93 then -- } ]
        stack[top] = nil
        top = top - 1
      elseif c == 44 then -- ,
        expect_key = stack[top] ~= false
      end
      i = i + 1
    end
  end
  return false
end
M.duplicate_member = duplicate_member

-- The object of JSON text s, or nil: an object, no BOM, depth <= 16, no
-- duplicate member names.
local function strict_object(s)
  if sub(s, 1, 3) == "\239\187\191" then return nil end
  local v = json.decode(s, { max_depth = 16 })
  if type(v) ~= "table" or getmetatable(v) == json.array_mt then return nil end
  if duplicate_member(s) then return nil end
  return v
end

---------------------------------------------------------------------------
-- JWT (RFC 7519), JWS compact form (RFC 7515), HS256 only
---------------------------------------------------------------------------

--- Seconds of clock difference allowed on exp, nbf and iat.
M.LEEWAY = 30
--- The largest token accepted, in bytes, unless the config says less.
M.TOKEN_MAX = 8192
--- The shortest HS256 key, in bytes (RFC 7518 section 3.2: at least the
-- hash's size).
M.KEY_MIN = 32

local configs = setmetatable({}, { __mode = "k" })

--- A checked JWT configuration from t:
--   keys     {kid = secret, ...}: every key that verifies (secrets of at
--            least 32 bytes, kids of letters, digits, ".", "_", "-")
--   current  the kid that signs new tokens (one of keys)
--   alg      "HS256" (the only one; it comes from here, never a token)
--   iss, aud expected issuer and audience (strings); when set a token
--            must carry them, and a token with an aud needs aud set
--   ttl      seconds a signed token lives (default 900)
--   max_size largest token in bytes (default and at most 8192)
-- Raises on a bad configuration, naming the field (never a secret).
function M.jwt_config(t)
  if type(t) ~= "table" then error("weir.auth.jwt_config: bad 'config' (table expected)", 2) end
  local alg = t.alg or "HS256"
  if alg ~= "HS256" then
    error("weir.auth.jwt_config: bad 'alg' (only HS256 is supported)", 2)
  end
  local keys, n = {}, 0
  if type(t.keys) ~= "table" then error("weir.auth.jwt_config: bad 'keys' (table expected)", 2) end
  for kid, secret in pairs(t.keys) do
    if type(kid) ~= "string" or not find(kid, "^[%w._-]+$") or #kid > 64 then
      error("weir.auth.jwt_config: bad key id (letters, digits, '.', '_', '-', at most 64)", 2)
    end
    if type(secret) ~= "string" or #secret < M.KEY_MIN then
      error(format("weir.auth.jwt_config: key %q shorter than %d bytes", kid, M.KEY_MIN), 2)
    end
    keys[kid] = secret
    n = n + 1
  end
  if n == 0 then error("weir.auth.jwt_config: bad 'keys' (at least one key expected)", 2) end
  if type(t.current) ~= "string" or not keys[t.current] then
    error("weir.auth.jwt_config: bad 'current' (the id of one of 'keys' expected)", 2)
  end
  for _, f in ipairs({ "iss", "aud" }) do
    if t[f] ~= nil and (type(t[f]) ~= "string" or t[f] == "") then
      error("weir.auth.jwt_config: bad '" .. f .. "' (non-empty string expected)", 2)
    end
  end
  local ttl = t.ttl or 900
  if type(ttl) ~= "number" or ttl <= 0 then
    error("weir.auth.jwt_config: bad 'ttl' (positive number of seconds expected)", 2)
  end
  local max_size = t.max_size or M.TOKEN_MAX
  if type(max_size) ~= "number" or max_size < 64 or max_size > M.TOKEN_MAX then
    error("weir.auth.jwt_config: bad 'max_size' (64.." .. M.TOKEN_MAX .. " expected)", 2)
  end
  local cfg = { alg = alg, keys = keys, current = t.current, iss = t.iss,
                aud = t.aud, ttl = ttl, max_size = max_size }
  configs[cfg] = true
  return cfg
end

local function checked(cfg, fn)
  if not configs[cfg] then
    error("weir.auth." .. fn .. ": bad 'cfg' (a table from jwt_config expected)", 3)
  end
end

local function now_or(now)
  if now == nil then return os.time() end
  if type(now) ~= "number" then error("weir.auth: bad 'now' (number of seconds expected)", 3) end
  return now
end

--- A signed token (HS256, header kid = cfg.current) of the claims table.
-- iss, aud, iat and exp are set from cfg and now (seconds since the epoch,
-- default the clock) where claims lack them. Raises on claims JSON cannot
-- hold.
function M.sign(claims, cfg, now)
  checked(cfg, "sign")
  if type(claims) ~= "table" then error("weir.auth.sign: bad 'claims' (table expected)", 2) end
  now = now_or(now)
  local c = {}
  for k, v in pairs(claims) do c[k] = v end
  if c.iss == nil then c.iss = cfg.iss end
  if c.aud == nil then c.aud = cfg.aud end
  if c.iat == nil then c.iat = floor(now) end
  if c.exp == nil then c.exp = floor(now + cfg.ttl) end
  local body, err = json.encode(c, { name = "claims" })
  if not body then error("weir.auth.sign: " .. err, 2) end
  local head = json.encode({ alg = cfg.alg, kid = cfg.current, typ = "JWT" })
  local input = b64e(head) .. "." .. b64e(body)
  return input .. "." .. b64e(M.hmac_sha256(cfg.keys[cfg.current], input))
end

local HEADER_ALLOWED = { alg = true, kid = true, typ = true }

local function numeric_date(v)
  return type(v) == "number" and v == v and v > -math.huge and v < math.huge
end

--- The claims of token when it is valid under cfg at now (seconds since
-- the epoch, default the clock), else nil and a short reason. Checked, in
-- order: size; three base64url parts, canonical, no padding; a JSON object
-- header with only alg, kid and typ, alg exactly cfg.alg, kid one of
-- cfg's keys (no kid: the current key), typ JWT when present; the HMAC,
-- compared in constant time; a JSON object payload without duplicate
-- members; exp required, nbf and iat when present, each with LEEWAY
-- seconds; iss equal to cfg.iss when set; aud (a string or an array)
-- containing cfg.aud when set, and absent when cfg.aud is not.
function M.verify(token, cfg, now)
  checked(cfg, "verify")
  now = now_or(now)
  if type(token) ~= "string" then return nil, "malformed token" end
  if #token > cfg.max_size then return nil, "token too large" end
  local h64, p64, s64 = match(token, "^([A-Za-z0-9_-]+)%.([A-Za-z0-9_-]+)%.([A-Za-z0-9_-]+)$")
  if not h64 then return nil, "malformed token" end
  local htext = b64d(h64)
  local header = htext and strict_object(htext)
  if not header then return nil, "malformed header" end
  for k in pairs(header) do
    if not HEADER_ALLOWED[k] then return nil, "unsupported header parameter" end
  end
  local alg = rawget(header, "alg")
  if alg == nil then return nil, "missing algorithm" end
  if alg ~= cfg.alg then return nil, "algorithm not allowed" end
  local typ = rawget(header, "typ")
  if typ ~= nil and (type(typ) ~= "string" or typ:upper() ~= "JWT") then
    return nil, "unsupported token type"
  end
  local kid = rawget(header, "kid")
  if kid == nil then kid = cfg.current end
  local key = type(kid) == "string" and rawget(cfg.keys, kid)
  if not key then return nil, "unknown key id" end
  local sig = b64d(s64)
  if not sig or #sig ~= 32 then return nil, "malformed signature" end
  if not equal(M.hmac_sha256(key, h64 .. "." .. p64), sig) then
    return nil, "bad signature"
  end
  local ptext = b64d(p64)
  local claims = ptext and strict_object(ptext)
  if not claims then return nil, "malformed payload" end
  local leeway = M.LEEWAY
  local exp, nbf, iat = rawget(claims, "exp"), rawget(claims, "nbf"), rawget(claims, "iat")
  if exp == nil then return nil, "missing exp" end
  if not numeric_date(exp) then return nil, "bad exp" end
  if now >= exp + leeway then return nil, "expired" end
  if nbf ~= nil then
    if not numeric_date(nbf) then return nil, "bad nbf" end
    if now + leeway < nbf then return nil, "not yet valid" end
  end
  if iat ~= nil then
    if not numeric_date(iat) then return nil, "bad iat" end
    if now + leeway < iat then return nil, "issued in the future" end
  end
  if cfg.iss ~= nil and rawget(claims, "iss") ~= cfg.iss then return nil, "wrong issuer" end
  local aud = rawget(claims, "aud")
  if aud ~= nil or cfg.aud ~= nil then
    local found = false
    if type(aud) == "string" then
      found = aud == cfg.aud
    elseif type(aud) == "table" and getmetatable(aud) == json.array_mt then
      for i = 1, #aud do
        if aud[i] == cfg.aud then found = true end
      end
    end
    if not found then return nil, "wrong audience" end
  end
  return claims
end

---------------------------------------------------------------------------
-- Roles
---------------------------------------------------------------------------

--- The roles, weakest first: each may do what the ones before it may.
M.ROLES = { "viewer", "operator", "developer", "admin" }
--- role name -> rank (1 = viewer .. 4 = admin).
M.ROLE_RANK = {}
for i, r in ipairs(M.ROLES) do M.ROLE_RANK[r] = i end

--- True when a principal with role may do what needs role needed. An
-- unknown role (a disabled or corrupt record) may do nothing; an unknown
-- needed role is a bug in the caller and raises.
function M.role_allows(role, needed)
  local need = rawget(M.ROLE_RANK, needed)
  if not need then error("weir.auth.role_allows: bad 'needed' (a role expected)", 2) end
  local have = type(role) == "string" and rawget(M.ROLE_RANK, role)
  return have ~= nil and have ~= false and have >= need
end

return M
