local auth = require("weir.auth")
local json = require("weir.json")

local function unhex(s)
  return (s:gsub("%s", ""):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- RFC 7515 appendix A.1: the HS256 example, its key and its token.
local A1_KEY = auth.b64url_decode(
  "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
local A1_TOKEN = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
  .. ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
  .. ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
local A1_EXP = 1300819380

local KEY1 = string.rep("k", 32)
local KEY2 = string.rep("q", 40)
local NOW = 1800000000

local function config(t)
  t = t or {}
  return auth.jwt_config({
    keys = t.keys or { k1 = KEY1 }, current = t.current or "k1",
    iss = t.iss == nil and "weir" or t.iss or nil,
    aud = t.aud == nil and "weir-api" or t.aud or nil,
    max_size = t.max_size,
  })
end

-- A token with this header and payload text (JSON, or any bytes), signed
-- with key: what an attacker who knows or guesses nothing but the format
-- can send, and with the key what a confused signer could.
local function forge(header, payload, key, encode)
  encode = encode or auth.b64url_encode
  local input = encode(header) .. "." .. encode(payload)
  return input .. "." .. auth.b64url_encode(auth.hmac_sha256(key or KEY1, input))
end

local function claims_text(extra)
  local c = { sub = "alice", iss = "weir", aud = "weir-api", iat = NOW, exp = NOW + 600 }
  for k, v in pairs(extra or {}) do
    if v == false then c[k] = nil else c[k] = v end
  end
  return json.encode(c)
end

local HS = '{"alg":"HS256","typ":"JWT","kid":"k1"}'
local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function refused(reason, token, cfg, now)
  local claims, why = auth.verify(token, cfg or config(), now or NOW)
  assert.is_nil(claims)
  assert.equal(reason, why)
end

describe("weir.auth primitives", function()
  it("computes HMAC-SHA256 as RFC 4231 says (test cases 1 to 7)", function()
    local cases = {
      { ("\11"):rep(20), "Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
      { "Jefe", "what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
      { ("\170"):rep(20), ("\221"):rep(50),
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
      { unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), ("\205"):rep(50),
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
      { ("\12"):rep(20), "Test With Truncation", "a3b6167473100ee06e0c796c2955552b" },
      { ("\170"):rep(131), "Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
      { ("\170"):rep(131), "This is a test using a larger than block-size key and a larger "
        .. "than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
    }
    for i, c in ipairs(cases) do
      local mac = hex(auth.hmac_sha256(c[1], c[2]))
      assert.equal(c[3], mac:sub(1, #c[3]), "RFC 4231 test case " .. i)
    end
  end)

  it("computes SHA-256 raw", function()
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                 hex(auth.sha256("abc")))
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                 hex(auth.sha256("")))
  end)

  it("computes PBKDF2-HMAC-SHA256 as RFC 7914 section 11 says", function()
    assert.equal("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
      .. "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783",
      hex(assert(auth.pbkdf2_sha256("passwd", "salt", 1, 64))))
    assert.equal("4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
      .. "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d",
      hex(assert(auth.pbkdf2_sha256("Password", "NaCl", 80000, 64))))
  end)

  it("computes scrypt as RFC 7914 section 12 says", function()
    local MB = 1024 * 1024
    assert.equal("77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
      .. "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906",
      hex(assert(auth.scrypt("", "", 16, 1, 1, MB, 64))))
    assert.equal("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
      .. "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640",
      hex(assert(auth.scrypt("password", "NaCl", 1024, 8, 16, 4 * MB, 64))))
    assert.equal("7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
      .. "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887",
      hex(assert(auth.scrypt("pleaseletmein", "SodiumChloride", 16384, 8, 1, 32 * MB, 64))))
    -- the fourth vector (N = 2^20) needs 1 GiB: over any bound weir uses
  end)

  it("refuses scrypt parameters over the memory bound or malformed", function()
    local v, err = auth.scrypt("pw", "salt", 2 ^ 20, 8, 1, 64 * 1024 * 1024, 32)
    assert.is_nil(v)
    assert.equal("limit", err.code)
    assert.matches("need more than 67108864 bytes", err.message, 1, true)
    v, err = auth.scrypt("pw", "salt", 1000, 8, 1, 64 * 1024 * 1024, 32)
    assert.is_nil(v)
    assert.equal("invalid", err.code)
    assert.has_error(function() auth.scrypt("pw", "salt", 1024, 2 ^ 32 + 8, 1, 2 ^ 30, 32) end,
      "weir.auth.scrypt: bad 'r' (integer 1..2147483647 expected)")
    assert.has_error(function() auth.pbkdf2_sha256("pw", "salt", 0, 32) end)
  end)

  it("compares in constant time", function()
    assert.is_true(auth.equal("abc", "abc"))
    assert.is_true(auth.equal("", ""))
    assert.is_false(auth.equal("abc", "abd"))
    assert.is_false(auth.equal("abc", "abcd"))
  end)
end)

describe("weir.auth base64url", function()
  it("encodes and decodes RFC 4648's vectors and every length", function()
    local vectors = { [""] = "", f = "Zg", fo = "Zm8", foo = "Zm9v", foob = "Zm9vYg",
                      fooba = "Zm9vYmE", foobar = "Zm9vYmFy", ["\251\255"] = "-_8" }
    for plain, coded in pairs(vectors) do
      assert.equal(coded, auth.b64url_encode(plain))
      assert.equal(plain, auth.b64url_decode(coded))
    end
    for n = 0, 70 do
      local s = auth.random(n)
      assert.equal(s, auth.b64url_decode(auth.b64url_encode(s)))
    end
  end)

  it("refuses padding, other alphabets, whitespace and non-canonical text", function()
    for _, bad in ipairs({ "Zg==", "Zm8=", "+/8", "Zm9v\n", " Zm9v", "Z", "Zm9vY", "Zh", "Zm9",
                           "Zm9vYh", "Zm9vYmF", "Zm.v" }) do
      assert.is_nil(auth.b64url_decode(bad), bad)
    end
    assert.is_nil(auth.b64url_decode(nil))
  end)
end)

describe("weir.auth JWT", function()
  it("verifies RFC 7515 appendix A.1 (HS256) with the clock passed in", function()
    local cfg = auth.jwt_config({ keys = { a1 = A1_KEY }, current = "a1", iss = "joe" })
    local claims = assert(auth.verify(A1_TOKEN, cfg, A1_EXP - 3600))
    assert.equal("joe", claims.iss)
    assert.is_true(claims["http://example.com/is_root"])
    -- within the 30 s leeway, then expired
    assert.is_table(auth.verify(A1_TOKEN, cfg, A1_EXP + 29))
    refused("expired", A1_TOKEN, cfg, A1_EXP + 30)
    refused("expired", A1_TOKEN, cfg) -- today's clock
    local other = auth.jwt_config({ keys = { a1 = A1_KEY }, current = "a1", iss = "jane" })
    refused("wrong issuer", A1_TOKEN, other, A1_EXP - 3600)
  end)

  it("signs what it verifies, with iss, aud, iat and exp from the config", function()
    local cfg = config()
    local token = auth.sign({ sub = "alice", role = "operator" }, cfg, NOW)
    local header = json.decode(auth.b64url_decode(token:match("^[^.]+")))
    assert.same({ alg = "HS256", kid = "k1", typ = "JWT" }, header)
    local claims = assert(auth.verify(token, cfg, NOW + 10))
    assert.same({ sub = "alice", role = "operator", iss = "weir", aud = "weir-api",
                  iat = NOW, exp = NOW + 900 }, claims)
    refused("expired", token, cfg, NOW + 930)
  end)

  it("rotates keys: the kid picks among configured keys only", function()
    local old = config()
    local token = auth.sign({ sub = "alice" }, old, NOW)
    local both = config({ keys = { k1 = KEY1, k2 = KEY2 }, current = "k2" })
    assert.is_table(auth.verify(token, both, NOW))
    local new_token = auth.sign({ sub = "bob" }, both, NOW)
    assert.equal("k2", json.decode(auth.b64url_decode(new_token:match("^[^.]+"))).kid)
    assert.is_table(auth.verify(new_token, both, NOW))
    refused("unknown key id", new_token, old)
    local retired = config({ keys = { k2 = KEY2 }, current = "k2" })
    refused("unknown key id", token, retired)
    -- a kid naming a file, a URL or a table field selects nothing
    for _, kid in ipairs({ "/etc/passwd", "https://evil.example/key", "__index", "keys" }) do
      refused("unknown key id", forge(json.encode({ alg = "HS256", kid = kid }), claims_text()))
    end
    refused("unknown key id", forge('{"alg":"HS256","kid":1}', claims_text()))
    -- no kid: the current key
    assert.is_table(auth.verify(forge('{"alg":"HS256"}', claims_text()), config(), NOW))
  end)

  it("refuses a tampered signature, header or payload", function()
    local cfg = config()
    local token = auth.sign({ sub = "alice", role = "viewer" }, cfg, NOW)
    local h, p, s = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    local flipped = (s:sub(1, 1) == "A" and "B" or "A") .. s:sub(2)
    refused("bad signature", h .. "." .. p .. "." .. flipped)
    local other_header = auth.b64url_encode('{"alg":"HS256","kid":"k1"}')
    refused("bad signature", other_header .. "." .. p .. "." .. s)
    local admin = auth.b64url_encode(claims_text({ role = "admin" }))
    refused("bad signature", h .. "." .. admin .. "." .. s)
    refused("malformed signature", h .. "." .. p .. "." .. s:sub(1, 20))
    refused("bad signature", forge(HS, claims_text(), string.rep("x", 32)))
  end)

  it("takes the algorithm from the config, never from the token", function()
    local body = claims_text()
    refused("malformed token", auth.b64url_encode('{"alg":"none"}') .. "."
      .. auth.b64url_encode(body) .. ".")
    refused("algorithm not allowed", forge('{"alg":"none"}', body))
    for _, alg in ipairs({ "RS256", "HS384", "HS512", "ES256", "hs256", "HS256 ", "PS256" }) do
      refused("algorithm not allowed", forge(json.encode({ alg = alg }), body))
    end
    -- alg confusion: an RS256 token MACed with what a verifier might take
    -- as the "public key"
    refused("algorithm not allowed", forge('{"alg":"RS256","typ":"JWT"}', body, KEY1))
    refused("algorithm not allowed", forge('{"alg":["HS256"]}', body))
    refused("missing algorithm", forge('{"typ":"JWT"}', body))
    refused("missing algorithm", forge('{}', body))
    assert.has_error(function() auth.jwt_config({ keys = { k = KEY1 }, current = "k", alg = "none" }) end,
      "weir.auth.jwt_config: bad 'alg' (only HS256 is supported)")
  end)

  it("refuses header parameters it does not know (key URLs, embedded keys, crit)", function()
    for _, extra in ipairs({ '"jku":"https://evil.example/jwks"', '"jwk":{"kty":"oct","k":"AA"}',
                             '"x5u":"https://evil.example/cert"', '"crit":["exp"]', '"b64":false' }) do
      refused("unsupported header parameter", forge('{"alg":"HS256",' .. extra .. "}", claims_text()))
    end
    refused("unsupported token type", forge('{"alg":"HS256","typ":"at+jwt"}', claims_text()))
    assert.is_table(auth.verify(forge('{"alg":"HS256","typ":"jwt"}', claims_text()), config(), NOW))
  end)

  it("checks exp, nbf and iat with a 30 second leeway", function()
    refused("missing exp", forge(HS, claims_text({ exp = false })))
    refused("bad exp", forge(HS, claims_text({ exp = "tomorrow" })))
    refused("expired", forge(HS, claims_text({ exp = NOW - 30 })))
    assert.is_table(auth.verify(forge(HS, claims_text({ exp = NOW - 29 })), config(), NOW))
    refused("not yet valid", forge(HS, claims_text({ nbf = NOW + 31 })))
    assert.is_table(auth.verify(forge(HS, claims_text({ nbf = NOW + 30 })), config(), NOW))
    refused("bad nbf", forge(HS, claims_text({ nbf = json.null })))
    refused("issued in the future", forge(HS, claims_text({ iat = NOW + 31 })))
    refused("bad iat", forge(HS, claims_text({ iat = true })))
  end)

  it("checks iss and aud", function()
    refused("wrong issuer", forge(HS, claims_text({ iss = "someone-else" })))
    refused("wrong issuer", forge(HS, claims_text({ iss = false })))
    refused("wrong audience", forge(HS, claims_text({ aud = "other-api" })))
    refused("wrong audience", forge(HS, claims_text({ aud = false })))
    refused("wrong audience", forge(HS, claims_text({ aud = { "a", "b" } })))
    refused("wrong audience", forge(HS, claims_text({ aud = { x = "weir-api" } })))
    assert.is_table(auth.verify(forge(HS, claims_text({ aud = { "a", "weir-api" } })), config(), NOW))
    -- a token meant for some audience is refused where none is configured
    local no_aud = config({ aud = false })
    refused("wrong audience", forge(HS, claims_text()), no_aud)
    assert.is_table(auth.verify(forge(HS, claims_text({ aud = false })), no_aud, NOW))
  end)

  it("refuses non-canonical base64url and padding", function()
    local body = claims_text()
    local h = auth.b64url_encode(HS)
    -- padded parts, standard alphabet, whitespace: not even the shape
    local padded = forge(HS, body, nil, function(s)
      local e = auth.b64url_encode(s)
      return e .. string.rep("=", (4 - #e % 4) % 4)
    end)
    assert.matches("=", padded, 1, true)
    refused("malformed token", padded)
    refused("malformed token", h .. "." .. auth.b64url_encode(body) .. ".abc+/def")
    refused("malformed token", h .. " ." .. auth.b64url_encode(body) .. ".abc")
    refused("malformed token", A1_TOKEN .. ".extra")
    -- a payload whose last letter has unused bits set, correctly MACed
    local p = auth.b64url_encode(body)
    assert.is_true(#p % 4 ~= 0)
    local last = p:sub(-1)
    local i = ALPHABET:find(last, 1, true)
    local noncanon = p:sub(1, -2) .. ALPHABET:sub(i + 1, i + 1)
    assert.is_nil(auth.b64url_decode(noncanon))
    local input = h .. "." .. noncanon
    refused("malformed payload", input .. "." .. auth.b64url_encode(auth.hmac_sha256(KEY1, input)))
    -- the same for the header
    local hx = auth.b64url_encode('{"alg":"HS256","kid":"k1"}')
    assert.is_true(#hx % 4 ~= 0)
    local hlast = ALPHABET:find(hx:sub(-1), 1, true)
    hx = hx:sub(1, -2) .. ALPHABET:sub(hlast + 1, hlast + 1)
    refused("malformed header", hx .. "." .. p .. "." .. auth.b64url_encode(auth.hmac_sha256(KEY1, hx .. "." .. p)))
  end)

  it("reads strict JSON: objects only, no duplicate members, no BOM", function()
    local dup = '{"sub":"alice","iss":"weir","aud":"weir-api","exp":' .. (NOW + 60)
      .. ',"exp":' .. (NOW + 99999) .. "}"
    refused("malformed payload", forge(HS, dup))
    local escaped = '{"sub":"a","iss":"weir","aud":"weir-api","exp":' .. (NOW + 60)
      .. ',"\\u0065xp":' .. (NOW + 99999) .. "}"
    refused("malformed payload", forge(HS, escaped))
    local nested = '{"iss":"weir","aud":"weir-api","exp":' .. (NOW + 60) .. ',"x":{"a":1,"a":2}}'
    refused("malformed payload", forge(HS, nested))
    refused("malformed header", forge('{"alg":"none","alg":"HS256"}', claims_text()))
    refused("malformed payload", forge(HS, "[1,2]"))
    refused("malformed payload", forge(HS, '"text"'))
    refused("malformed payload", forge(HS, claims_text() .. " x"))
    refused("malformed payload", forge(HS, "\239\187\191" .. claims_text()))
    refused("malformed header", forge("[]", claims_text()))
    refused("malformed header", forge("not json", claims_text()))
    -- the same names in different objects, and in strings, are fine
    local ok = '{"iss":"weir","aud":"weir-api","exp":' .. (NOW + 60)
      .. ',"a":{"exp":1,"b":[{"exp":2},{"exp":3}]},"s":"\\",\\"exp\\":"}'
    assert.is_table(auth.verify(forge(HS, ok), config(), NOW))
    assert.is_false(auth.duplicate_member('{"a":[1,{"a":{}}],"b":{"a":1}}'))
    assert.is_true(auth.duplicate_member('{"a":[1,{"c":{},"c":2}]}'))
  end)

  it("refuses an oversized token before looking at it", function()
    local big = forge(HS, claims_text({ pad = string.rep("x", 9000) }))
    refused("token too large", big)
    local cfg = config({ max_size = 200 })
    refused("token too large", auth.sign({ sub = string.rep("y", 200) }, cfg, NOW), cfg)
    refused("token too large", string.rep("a", 10 * 1024 * 1024))
  end)

  it("gives short reasons that hold nothing of the token or the key", function()
    local cfg = config()
    local token = auth.sign({ sub = "alice" }, cfg, NOW)
    local cases = { token, token .. "x", "x" .. token, token:gsub("%.", "!"), A1_TOKEN,
                    forge('{"alg":"HS256","kid":"secret-kid"}', claims_text()) }
    for _, t in ipairs(cases) do
      local claims, why = auth.verify(t, cfg, NOW + 100000)
      assert.is_nil(claims)
      assert.is_true(#why < 40, why)
      assert.is_nil(why:find("alice", 1, true))
      assert.is_nil(why:find("secret", 1, true))
      assert.is_nil(why:find(KEY1, 1, true))
    end
    refused("malformed token", nil)
    refused("malformed token", "")
  end)

  it("refuses a configuration that is weak or incomplete", function()
    assert.has_error(function() auth.jwt_config({ keys = { k = "short" }, current = "k" }) end,
      'weir.auth.jwt_config: key "k" shorter than 32 bytes')
    assert.has_error(function() auth.jwt_config({ keys = {}, current = "k" }) end)
    assert.has_error(function() auth.jwt_config({ keys = { k = KEY1 }, current = "other" }) end)
    assert.has_error(function() auth.jwt_config({ keys = { ["../k"] = KEY1 }, current = "../k" }) end)
    assert.has_error(function() auth.jwt_config({ keys = { k = KEY1 }, current = "k", max_size = 1e6 }) end)
    assert.has_error(function() auth.verify(A1_TOKEN, { keys = { k = KEY1 }, current = "k" }) end,
      "weir.auth.verify: bad 'cfg' (a table from jwt_config expected)")
    local ok, err = pcall(auth.jwt_config, { keys = { k = "short-secret" }, current = "k" })
    assert.is_false(ok)
    assert.is_nil(tostring(err):find("short-secret", 1, true))
  end)
end)

describe("weir.auth passwords", function()
  it("hashes with scrypt into a self-describing string and verifies", function()
    local stored = assert(auth.hash_password("correct horse"))
    assert.matches("^scrypt%$16384%$8%$1%$[%w_-]+%$[%w_-]+$", stored)
    assert.is_true(auth.verify_password("correct horse", stored))
    assert.is_false(auth.verify_password("correct horsf", stored))
    assert.is_false(auth.verify_password("Correct horse", stored))
    assert.is_false(auth.needs_rehash(stored))
    assert.is_not.equal(stored, auth.hash_password("correct horse")) -- salted
  end)

  it("refuses empty and over-long passwords", function()
    local v, why = auth.hash_password("")
    assert.is_nil(v)
    assert.equal("empty password", why)
    assert.is_nil(auth.hash_password(string.rep("p", 1025)))
    local stored = assert(auth.hash_password("pw"))
    local ok
    ok, why = auth.verify_password("", stored)
    assert.is_false(ok)
    assert.equal("empty password", why)
    assert.has_error(function() auth.hash_password(nil) end)
  end)

  it("costs a hash and says no for a user without a stored hash", function()
    assert.is_false(auth.verify_password("anything", nil))
  end)

  it("verifies hashes made with other parameters, and says they need a rehash", function()
    local old = assert(auth.hash_password("pw", { N = 1024, r = 8, p = 1 }))
    assert.matches("^scrypt%$1024%$8%$1%$", old)
    assert.is_true(auth.verify_password("pw", old))
    assert.is_true(auth.needs_rehash(old))
    local pb = assert(auth.hash_password("pw", { scheme = "pbkdf2-sha256", iterations = 1000 }))
    assert.matches("^pbkdf2%-sha256%$1000%$[%w_-]+%$[%w_-]+$", pb)
    assert.is_true(auth.verify_password("pw", pb))
    assert.is_false(auth.verify_password("pW", pb))
    assert.is_true(auth.needs_rehash(pb))
  end)

  it("refuses stored hashes it cannot use or that would cost too much", function()
    local stored = assert(auth.hash_password("pw"))
    local salt, h = stored:match("%$([^$]+)%$([^$]+)$")
    local bad = {
      "plain", "", "scrypt$16384$8$1$" .. salt, -- missing part
      "scrypt$1048576$8$1$" .. salt .. "$" .. h, -- 1 GiB
      "scrypt$16384$8$64$" .. salt .. "$" .. h, -- p over the bound
      "scrypt$16384$800$1$" .. salt .. "$" .. h, -- memory
      "scrypt$1000$8$1$" .. salt .. "$" .. h, -- not a power of 2
      "scrypt$16384$8$1$" .. salt .. "=$" .. h, -- padding
      "scrypt$16384$8$1$" .. salt .. "$" .. h:sub(1, 10), -- too short
      "pbkdf2-sha256$99999999$" .. salt .. "$" .. h, -- too many iterations
      "md5$" .. salt .. "$" .. h,
    }
    for _, s in ipairs(bad) do
      local ok, why = auth.verify_password("pw", s)
      assert.is_false(ok, s)
      assert.equal("bad stored hash", why, s)
      assert.is_true(auth.needs_rehash(s), s)
    end
    -- a changed hash or salt is a wrong password, not an error
    local flipped = stored:sub(1, -2) .. (stored:sub(-1) == "A" and "Q" or "A")
    assert.is_false(auth.verify_password("pw", flipped))
  end)
end)

describe("weir.auth API keys", function()
  it("makes a key shown once and a hash to store, and verifies it", function()
    local k = auth.new_api_key()
    assert.matches("^weir_" .. ("%x"):rep(16) .. "_" .. ("[A-Za-z0-9_-]"):rep(43) .. "$", k.key)
    assert.equal(k.id, k.key:sub(6, 21))
    assert.matches("^" .. ("%x"):rep(64) .. "$", k.hash)
    local id, secret = auth.parse_api_key(k.key)
    assert.equal(k.id, id)
    assert.equal(32, #auth.b64url_decode(secret))
    assert.is_nil(k.hash:find(secret, 1, true))
    assert.is_true(auth.verify_api_key(k.key, k.hash))
    local other = auth.new_api_key()
    assert.is_not.equal(k.id, other.id)
    assert.is_false(auth.verify_api_key(other.key, k.hash))
    -- the same id with another secret
    assert.is_false(auth.verify_api_key("weir_" .. k.id .. "_" .. secret:reverse(), k.hash))
    assert.is_false(auth.verify_api_key(k.key, nil))
  end)

  it("parses only well-formed keys", function()
    local k = auth.new_api_key()
    for _, bad in ipairs({ k.key .. "x", k.key:sub(1, -2), " " .. k.key, k.key:gsub("^weir_", "WEIR_"),
                           "weir_" .. k.id, A1_TOKEN, "", 42 }) do
      assert.is_nil(auth.parse_api_key(bad), tostring(bad))
      assert.is_false(auth.verify_api_key(bad, k.hash))
    end
  end)
end)

describe("weir.auth roles", function()
  it("ranks viewer < operator < developer < admin", function()
    assert.same({ "viewer", "operator", "developer", "admin" }, auth.ROLES)
    local allowed = {}
    for _, role in ipairs(auth.ROLES) do
      for _, needed in ipairs(auth.ROLES) do
        if auth.role_allows(role, needed) then allowed[#allowed + 1] = role .. ">=" .. needed end
      end
    end
    assert.same({ "viewer>=viewer", "operator>=viewer", "operator>=operator",
                  "developer>=viewer", "developer>=operator", "developer>=developer",
                  "admin>=viewer", "admin>=operator", "admin>=developer", "admin>=admin" }, allowed)
  end)

  it("lets an unknown role do nothing and raises on an unknown requirement", function()
    assert.is_false(auth.role_allows(nil, "viewer"))
    assert.is_false(auth.role_allows("root", "viewer"))
    assert.is_false(auth.role_allows("Admin", "viewer"))
    assert.is_false(auth.role_allows("__index", "viewer"))
    assert.has_error(function() auth.role_allows("admin", "superuser") end)
  end)
end)
