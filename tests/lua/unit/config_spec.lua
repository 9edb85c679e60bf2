-- weir.config: finding and loading weir.yaml, secret references, URL
-- parsing, normalized connections, every error at once, redaction.
--
-- Most specs pass opts.getenv to config.find/config.load so they need no
-- process environment; one spec per entry point sets a real variable
-- through the FFI (setenv) to prove os.getenv is the default.
local H = require("helpers")
local config = require("weir.config")

local ffi = require("weir._ffi").ffi
pcall(ffi.cdef, "int setenv(const char *, const char *, int); int unsetenv(const char *);")

local MB = 1024 * 1024
local CANARY = "CANARY-pw-7f3a9c1e"

local function env(t)
  return function(name) return t[name] end
end

-- Write text as dir/name and load it; returns cfg, errs.
local function load_text(dir, text, vars, name)
  local path = dir .. "/" .. (name or "weir.yaml")
  H.write(path, text)
  return config.load(path, { getenv = env(vars or {}) })
end

local function joined(errs)
  return table.concat(errs or {}, "\n")
end

local function count(s, needle)
  local n, i = 0, 1
  while true do
    local j = s:find(needle, i, true)
    if not j then return n end
    n, i = n + 1, j + 1
  end
end

describe("weir.config", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  describe("find", function()
    it("takes --config first, then WEIR_CONFIG, then weir.yaml in the folder", function()
      H.write(dir .. "/weir.yaml", "")
      H.write(dir .. "/a.yaml", "")
      H.write(dir .. "/b.yaml", "")
      local vars = { WEIR_CONFIG = dir .. "/b.yaml" }
      assert.equal(dir .. "/a.yaml",
                   config.find({ path = dir .. "/a.yaml", cwd = dir, getenv = env(vars) }))
      assert.equal(dir .. "/b.yaml", config.find({ cwd = dir, getenv = env(vars) }))
      assert.equal(dir .. "/weir.yaml", config.find({ cwd = dir, getenv = env({}) }))
    end)

    it("takes relative paths from opts.cwd", function()
      H.write(dir .. "/conf/x.yaml", "")
      assert.equal(dir .. "/conf/x.yaml",
                   config.find({ path = "conf/x.yaml", cwd = dir, getenv = env({}) }))
      assert.equal(dir .. "/conf/x.yaml",
                   config.find({ cwd = dir, getenv = env({ WEIR_CONFIG = "conf/x.yaml" }) }))
    end)

    it("finds nothing, without an error, when there is no config at all", function()
      local p, err = config.find({ cwd = dir, getenv = env({}) })
      assert.is_nil(p)
      assert.is_nil(err)
      -- an empty WEIR_CONFIG counts as unset
      p, err = config.find({ cwd = dir, getenv = env({ WEIR_CONFIG = "" }) })
      assert.is_nil(p)
      assert.is_nil(err)
    end)

    it("fails when a given path does not exist, saying where it came from", function()
      H.write(dir .. "/weir.yaml", "")
      local p, err = config.find({ path = "nope.yaml", cwd = dir, getenv = env({}) })
      assert.is_nil(p)
      assert.matches("--config", err, 1, true)
      assert.matches("nope.yaml", err, 1, true)
      assert.matches("No such file", err, 1, true)
      p, err = config.find({ cwd = dir, getenv = env({ WEIR_CONFIG = dir .. "/gone.yaml" }) })
      assert.is_nil(p)
      assert.matches("WEIR_CONFIG", err, 1, true)
      assert.matches("gone.yaml", err, 1, true)
    end)

    it("fails when a given path is a folder", function()
      local p, err = config.find({ path = dir, getenv = env({}) })
      assert.is_nil(p)
      assert.matches("directory", err, 1, true)
    end)

    it("reads WEIR_CONFIG from the real environment by default", function()
      H.write(dir .. "/real.yaml", "")
      assert.equal(0, ffi.C.setenv("WEIR_CONFIG", dir .. "/real.yaml", 1))
      local p = config.find({ cwd = dir })
      ffi.C.unsetenv("WEIR_CONFIG")
      assert.equal(dir .. "/real.yaml", p)
    end)

    it("opens the config found, or an empty one", function()
      local cfg = assert(config.open({ cwd = dir, getenv = env({}) }))
      assert.same({}, cfg.connections)
      assert.is_nil(cfg.file)
      local _, errs = config.open({ path = "missing.yaml", cwd = dir, getenv = env({}) })
      assert.equal(1, #errs)
      assert.matches("missing.yaml", errs[1], 1, true)
    end)
  end)

  describe("load", function()
    it("gives an empty config for no file, an empty file or null connections", function()
      local cfg = assert(config.load(nil))
      assert.same({}, cfg.connections)
      assert.same({}, cfg:secrets())
      cfg = assert(load_text(dir, ""))
      assert.same({}, cfg.connections)
      cfg = assert(load_text(dir, "connections:\n"))
      assert.same({}, cfg.connections)
    end)

    it("normalizes a minimal postgres connection with every default", function()
      local cfg = assert(load_text(dir, [[
connections:
  warehouse:
    type: postgres
    host: 127.0.0.1
    user: weir
]]))
      assert.same({
        name = "warehouse", type = "postgres", host = "127.0.0.1", port = 5432,
        database = "weir", user = "weir", sslmode = "prefer", connect_timeout_ms = 10000,
        statement_timeout_ms = 0, max_result_bytes = 64 * MB,
        pool = { min = 0, max = 4, idle_timeout_ms = 60000, max_lifetime_ms = 1800000 },
        breaker = { threshold = 5, window_ms = 30000, open_ms = 10000, half_open_probes = 1 },
        options = { application_name = "weir" },
      }, cfg.connections.warehouse)
      assert.equal(cfg.connections.warehouse, cfg:connection("warehouse"))
    end)

    it("normalizes a minimal redis connection with every default", function()
      local cfg = assert(load_text(dir, "connections:\n  cache:\n    type: redis\n"))
      assert.same({
        name = "cache", type = "redis", host = "localhost", port = 6379, database = 0,
        connect_timeout_ms = 10000, timeout_ms = 30000, max_reply_bytes = 64 * MB,
        pool = { min = 0, max = 4, idle_timeout_ms = 60000, max_lifetime_ms = 1800000 },
        breaker = { threshold = 5, window_ms = 30000, open_ms = 10000, half_open_probes = 1 },
      }, cfg.connections.cache)
    end)

    it("takes every field, with durations and sizes in their units", function()
      local cfg = assert(load_text(dir, [[
connections:
  pg:
    type: postgres
    host: db.internal
    port: 6432
    database: sales
    user: etl
    password: "${env:PW}"
    sslmode: require
    application_name: nightly
    options: { client_encoding: UTF8, keepalives: 1 }
    connect_timeout: 2s
    statement_timeout: 1m30s
    max_result_size: 16MB
    pool: { min: 1, max: 10, idle_timeout: 5m, max_lifetime: 1h }
    breaker: { threshold: 3, window: 10s, open: 500ms, half_open_probes: 2 }
  kv:
    type: redis
    host: "::1"
    port: "${env:RPORT}"
    database: 3
    user: app
    password: s3cret
    connect_timeout: 250ms
    timeout: 3
    max_reply_size: 512KB
]], { PW = "pgpw", RPORT = "6380" }))
      local pg, kv = cfg.connections.pg, cfg.connections.kv
      assert.same({
        name = "pg", type = "postgres", host = "db.internal", port = 6432, database = "sales",
        user = "etl", password = "pgpw", sslmode = "require", connect_timeout_ms = 2000,
        statement_timeout_ms = 90000, max_result_bytes = 16 * MB,
        pool = { min = 1, max = 10, idle_timeout_ms = 300000, max_lifetime_ms = 3600000 },
        breaker = { threshold = 3, window_ms = 10000, open_ms = 500, half_open_probes = 2 },
        options = { application_name = "nightly", client_encoding = "UTF8", keepalives = "1" },
      }, pg)
      assert.same({
        name = "kv", type = "redis", host = "::1", port = 6380, database = 3, user = "app",
        password = "s3cret", connect_timeout_ms = 250, timeout_ms = 3000,
        max_reply_bytes = 512 * 1024,
        pool = { min = 0, max = 4, idle_timeout_ms = 60000, max_lifetime_ms = 1800000 },
        breaker = { threshold = 5, window_ms = 30000, open_ms = 10000, half_open_probes = 1 },
      }, kv)
      -- a port from ${env:} is a setting, not a credential: not masked
      assert.equal("redis://app@[::1]:6380/3", config.describe(kv))
    end)

    it("keeps a global metadata_url, expanded", function()
      local cfg = assert(load_text(dir, 'metadata_url: "postgres://meta:${env:MPW}@m/weir"\n',
                                   { MPW = "metapw" }))
      assert.equal("postgres://meta:metapw@m/weir", cfg.metadata_url)
      assert.same({ "metapw" }, cfg:secrets())
    end)
  end)

  describe("URLs", function()
    it("parses postgres:// and postgresql:// with percent-encoding and parameters", function()
      local cfg = assert(load_text(dir, [[
connections:
  a:
    type: postgres
    url: "postgres://us%40er:p%2Fw%3Ad@db.example:5433/my%20db?]]
        .. [[sslmode=require&connect_timeout=7&application_name=etl%20job"
  b:
    type: postgres
    url: "postgresql://weir@[::1]/warehouse"
]]))
      local a, b = cfg.connections.a, cfg.connections.b
      assert.equal("us@er", a.user)
      assert.equal("p/w:d", a.password)
      assert.equal("db.example", a.host)
      assert.equal(5433, a.port)
      assert.equal("my db", a.database)
      assert.equal("require", a.sslmode)
      assert.equal(7000, a.connect_timeout_ms)
      assert.equal("etl job", a.options.application_name)
      assert.equal("::1", b.host)
      assert.equal(5432, b.port)
      assert.equal("weir", b.user)
      assert.equal("warehouse", b.database)
      assert.is_nil(b.password)
      -- the password is secret as written and decoded
      local s = cfg:secrets()
      assert.same({ "p%2Fw%3Ad", "p/w:d" }, s)
    end)

    it("parses redis:// with and without user, password and database", function()
      local cfg = assert(load_text(dir, [[
connections:
  a: { type: redis, url: "redis://:pa%23ss@127.0.0.1:6390/5" }
  b: { type: redis, url: "redis://app:pw@cache.local" }
  c: { type: redis, url: "redis://cache.local/" }
]]))
      local a, b, c = cfg.connections.a, cfg.connections.b, cfg.connections.c
      assert.same({ nil, "pa#ss", "127.0.0.1", 6390, 5 }, { a.user, a.password, a.host, a.port, a.database })
      assert.same({ "app", "pw", "cache.local", 6379, 0 }, { b.user, b.password, b.host, b.port, b.database })
      assert.same({ nil, nil, "cache.local", 6379, 0 }, { c.user, c.password, c.host, c.port, c.database })
    end)

    it("lets a separate field win over the same part of the url", function()
      local cfg = assert(load_text(dir, [[
connections:
  pg:
    type: postgres
    url: "postgres://u1:pw1@h1:1111/db1?sslmode=disable"
    host: h2
    port: 2222
    database: db2
    user: u2
    password: pw2
    sslmode: require
  r:
    type: redis
    url: "redis://:pw1@h1:1111/1"
    database: 2
    password: pw2
]]))
      local pg, r = cfg.connections.pg, cfg.connections.r
      assert.same({ "h2", 2222, "db2", "u2", "pw2", "require" },
                  { pg.host, pg.port, pg.database, pg.user, pg.password, pg.sslmode })
      assert.same({ "h1", 1111, 2, "pw2" }, { r.host, r.port, r.database, r.password })
      -- the overridden url password is still a secret
      assert.same({ "pw1", "pw2" }, cfg:secrets())
    end)

    it("rejects bad URLs without quoting them", function()
      local _, errs = load_text(dir, [[
connections:
  a: { type: postgres, url: "mysql://u:]] .. CANARY .. [[@h/db" }
  b: { type: postgres, url: "postgres://u:]] .. CANARY .. [[@h:99999/db" }
  c: { type: postgres, url: "postgres://u:]] .. CANARY .. [[@h/db?sslmode=require&foo=1" }
  d: { type: redis, url: "rediss://:]] .. CANARY .. [[@h/0?tls=1" }
  e: { type: redis, url: "redis://:]] .. CANARY .. [[@h/zero" }
  f: { type: postgres, url: "postgres://u:%zz]] .. CANARY .. [[@h/db" }
  g: { type: postgres, url: "not a url" }
  h: { type: postgres, url: "postgres://u@h1,h2/db" }
]])
      local all = joined(errs)
      assert.equal(8, #errs, all)
      assert.matches('connections.a.url: expected a postgres:// or postgresql:// URL, got scheme "mysql"', all, 1, true)
      assert.matches("connections.b.url: the URL's port must be 1..65535", all, 1, true)
      assert.matches('connections.c.url: unsupported URL parameter "foo"', all, 1, true)
      assert.matches("connections.d.url: URL parameters are not supported", all, 1, true)
      assert.matches("connections.e.url: the URL's path must be /DATABASE (an integer)", all, 1, true)
      assert.matches("connections.f.url: bad percent-encoding in the URL's password", all, 1, true)
      assert.matches("connections.g.url: expected a URL like", all, 1, true)
      assert.matches("connections.h.url: several hosts", all, 1, true)
      assert.falsy(all:find(CANARY, 1, true))
    end)

    it("hints at percent-encoding when a reference broke a URL", function()
      local _, errs = load_text(dir, [[
connections:
  a: { type: postgres, url: "postgres://u:${env:PW}@h/db" }
]], { PW = "a/b?" .. CANARY })
      assert.equal(1, #errs)
      assert.matches("must be percent-encoded", errs[1], 1, true)
      assert.falsy(errs[1]:find(CANARY, 1, true))
    end)

    it("splits URLs with parse_url", function()
      local u = assert(config.parse_url("postgres://a%20b:c%3Ad@[fe80::1]:15/x%2Fy?k=v%26w&z"))
      assert.same({ scheme = "postgres", user = "a b", password = "c:d", password_raw = "c%3Ad",
                    host = "fe80::1", port = 15, path = "/x/y",
                    query = { { "k", "v&w" }, { "z", "" } } }, u)
      local v, err = config.parse_url("postgres://u:p%4@h/db")
      assert.is_nil(v)
      assert.equal("bad percent-encoding in the URL's password", err)
    end)
  end)

  describe("references", function()
    it("expands ${env:NAME} and ${file:PATH} anywhere in a string", function()
      local sub = dir .. "/conf"
      H.write(sub .. "/secrets/redis.pw", "file-pw\n")
      H.write(sub .. "/secrets/two.pw", "two\n\n")
      H.write(sub .. "/secrets/crlf.pw", "crlf\r\n")
      local cfg = assert(load_text(sub, [[
connections:
  cache:
    type: redis
    url: "redis://:${file:secrets/redis.pw}@127.0.0.1:6379/0"
  pg:
    type: postgres
    host: "db-${env:STAGE}.internal"
    user: "${file:secrets/crlf.pw}"
    password: "${file:secrets/two.pw}"
    application_name: "cost $$5 and $${env:NOT_EXPANDED}"
]], { STAGE = "prod" }))
      assert.equal("file-pw", cfg.connections.cache.password)
      assert.equal("db-prod.internal", cfg.connections.pg.host)
      assert.equal("crlf", cfg.connections.pg.user)
      -- only one trailing newline is removed
      assert.equal("two\n", cfg.connections.pg.password)
      assert.equal("cost $$5 and ${env:NOT_EXPANDED}", cfg.connections.pg.options.application_name)
      -- host and user are settings: their references are not secrets
      assert.same({ "file-pw", "two\n" }, cfg:secrets())
    end)

    it("reads ${env:NAME} from the real environment by default", function()
      assert.equal(0, ffi.C.setenv("WEIR_CONFIG_SPEC_PW", CANARY, 1))
      H.write(dir .. "/weir.yaml", [[
connections:
  pg: { type: postgres, user: u, password: "${env:WEIR_CONFIG_SPEC_PW}" }
]])
      local cfg = config.load(dir .. "/weir.yaml")
      ffi.C.unsetenv("WEIR_CONFIG_SPEC_PW")
      assert.equal(CANARY, assert(cfg).connections.pg.password)
    end)

    it("reports a missing variable and a missing file with their paths", function()
      local _, errs = load_text(dir, [[
connections:
  pg:
    type: postgres
    user: u
    password: "${env:PGPASSWORD}"
  cache:
    type: redis
    url: "redis://:${file:secrets/redis.pw}@127.0.0.1:6379/0"
    host: "${vault:x}"
    port: "${env:PORT"
]])
      local file = dir .. "/weir.yaml"
      assert.equal(file, errs.file)
      assert.same({
        file .. ":5: connections.pg.password: environment variable PGPASSWORD is not set",
        file .. ':8: connections.cache.url: cannot read secret file "secrets/redis.pw":'
          .. " No such file or directory",
        file .. ":9: connections.cache.host: unknown reference ${vault:...} (expected ${env:NAME}"
          .. ' or ${file:PATH}; write "$${" for a literal "${")',
        file .. ':10: connections.cache.port: unterminated "${" (write "$${" for a literal "${")',
      }, { unpack(errs) })
    end)

    it("confines ${file:} to the config's folder and WEIR_SECRET_DIRS", function()
      local sub = dir .. "/proj"
      H.write(dir .. "/vault/db.pw", "vault-pw\n")
      H.write(sub .. "/in.pw", "in-pw\n")
      os.execute("ln -s ../vault/db.pw " .. H.q(sub .. "/link.pw"))
      for _, ref in ipairs({ "../vault/db.pw", dir .. "/vault/db.pw", "link.pw" }) do
        local _, errs = load_text(sub, 'connections:\n  pg: { type: postgres, user: u, '
                                       .. 'password: "${file:' .. ref .. '}" }\n')
        assert.equal(1, #errs, ref)
        assert.matches('cannot read secret file "' .. ref .. '": outside the config\'s folder and '
                       .. "WEIR_SECRET_DIRS", errs[1], 1, true)
      end
      local cfg = assert(load_text(sub, [[
connections:
  pg: { type: postgres, user: u, password: "${file:link.pw}" }
  r: { type: redis, url: "redis://:${file:in.pw}@127.0.0.1:6379/0" }
]], { WEIR_SECRET_DIRS = "/nonexistent:" .. dir .. "/vault" }))
      assert.equal("vault-pw", cfg.connections.pg.password)
      -- the files read, canonical, for the broker to hide from tasks
      local files = cfg.secret_files
      table.sort(files)
      local function real(p) return (H.output("realpath " .. H.q(p)):gsub("%s+$", "")) end
      assert.same({ real(sub .. "/in.pw"), real(dir .. "/vault/db.pw") }, files)
    end)

    it("reports a secret file that is a folder", function()
      H.write(dir .. "/secrets/x/keep", "")
      local _, errs = load_text(dir, [[
connections:
  pg: { type: postgres, user: u, password: "${file:secrets/x}" }
]])
      assert.equal(1, #errs)
      assert.matches('connections.pg.password: cannot read secret file "secrets/x": Is a directory',
                     errs[1], 1, true)
    end)
  end)

  describe("validation", function()
    it("refuses settings that need files in task workers, saying why", function()
      local _, errs = load_text(dir, [[
connections:
  pg:
    type: postgres
    url: "postgres://weir@h/db"
    sslmode: verify-full
    options: { sslrootcert: /etc/ssl/root.crt, passfile: /root/.pgpass, keepalives: 1 }
]])
      local all = joined(errs)
      assert.matches("sslmode: verify%-full needs the CA that signed the server's certificate", all)
      assert.matches("options.sslrootcert: set the sslrootcert file as tls.ca", all)
      assert.matches("options.passfile: passfile is not supported", all)
      assert.is_nil(all:find("keepalives", 1, true))
    end)

    it("reports every error at once, with file, line and path", function()
      local _, errs = load_text(dir, [[
connections:
  warehouse:
    type: postgres
    url: "postgres://weir@h/db"
    port: "abc"
    connect_timeout: soon
    statement_timeout: -1
    max_result_size: lots
    sslmode: maybe
    pool: { min: 5, max: 2, idle_timeout: 1 fortnight }
    colour: blue
  bad-name:
    type: redis
  other:
    type: mysql
  r:
    type: redis
    database: -1
    user: alone
    breaker: { threshold: 0, window: 0s }
  nouser:
    type: postgres
    options: { password: hunter2 }
extra: 1
]])
      local f = dir .. "/weir.yaml"
      local expected = {
        f .. ':2: connections.warehouse: unknown property "colour"',
        f .. ':5: connections.warehouse.port: expected integer 1..65535, got "abc"',
        f .. ':6: connections.warehouse.connect_timeout: expected a duration like "500ms",'
          .. ' "30s" or "2h", got "soon"',
        f .. ":7: connections.warehouse.statement_timeout: expected a duration >= 0, got -1",
        f .. ':8: connections.warehouse.max_result_size: expected a size like "64MB", got "lots"',
        f .. ":9: connections.warehouse.sslmode: expected one of disable, allow, prefer, require,"
          .. ' verify-ca, verify-full, got "maybe"',
        f .. ":10: connections.warehouse.pool: min (5) must not exceed max (2)",
        f .. ':10: connections.warehouse.pool.idle_timeout: expected a duration like "500ms",'
          .. ' "30s" or "2h", got "1 fortnight"',
        f .. ':15: connections.other.type: unknown connection type "mysql" (expected postgres'
          .. " or redis)",
        f .. ":16: connections.r: a redis user needs a password",
        f .. ":18: connections.r.database: expected integer 0..2147483647, got -1",
        f .. ":20: connections.r.breaker.threshold: expected integer 1..1000000, got 0",
        f .. ":20: connections.r.breaker.window: must be at least 1ms",
        f .. ":21: connections.nouser: user is required (in url or as a field)",
        f .. ":23: connections.nouser.options.password: set password as a connection field,"
          .. " not in options",
      }
      local all = joined(errs)
      for _, e in ipairs(expected) do
        assert.truthy(all:find(e, 1, true), "missing: " .. e .. "\n--- got:\n" .. all)
      end
      -- the schema's findings come too: the bad name and the unknown top-level key
      assert.matches('connections: invalid property name "bad-name"', all, 1, true)
      assert.matches('unknown property "extra"', all, 1, true)
      assert.equal(#expected + 2, #errs, all)
      -- sorted by line
      local last = 0
      for _, e in ipairs(errs) do
        local line = tonumber(e:match("^[^:]*:(%d+):")) or 0
        assert.is_true(line >= last, all)
        last = line
      end
    end)

    it("accepts a 63-byte connection name and rejects a 64-byte one", function()
      local ok63 = string.rep("a", 63)
      assert(load_text(dir, "connections:\n  " .. ok63 .. ": { type: redis }\n"))
      local _, errs = load_text(dir, "connections:\n  " .. ok63 .. "b: { type: redis }\n")
      assert.equal(1, #errs)
      assert.matches("invalid property name", errs[1], 1, true)
    end)

    it("requires a type and rejects an unknown one", function()
      local _, errs = load_text(dir, [[
connections:
  a: { host: x }
  b: { type: mongodb }
  c: null
]])
      local all = joined(errs)
      assert.equal(3, #errs, all)
      assert.matches(':2: connections.a: missing required property "type"', all, 1, true)
      assert.matches(':3: connections.b.type: unknown connection type "mongodb"', all, 1, true)
      assert.matches(":4: connections.c: expected object, got null", all, 1, true)
    end)

    it("reports bad durations and sizes", function()
      local _, errs = load_text(dir, [[
connections:
  r:
    type: redis
    connect_timeout: 0
    timeout: 10 parsecs
    max_reply_size: 12
    pool: { max_lifetime: 30d }
]])
      local all = joined(errs)
      assert.equal(4, #errs, all)
      assert.matches("connections.r.connect_timeout: must be at least 1ms", all, 1, true)
      assert.matches('connections.r.timeout: expected a duration like "500ms", "30s" or "2h",'
                     .. ' got "10 parsecs"', all, 1, true)
      assert.matches("connections.r.max_reply_size: must be at least 1KB", all, 1, true)
      assert.matches("connections.r.pool.max_lifetime: must be at most", all, 1, true)
    end)

    it("reports a YAML syntax error with its line and column", function()
      local _, errs = load_text(dir, "connections:\n  a: [\n")
      assert.equal(1, #errs)
      assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/weir.yaml:%d+:%d+: yaml: ", errs[1])
    end)

    it("reports an unreadable config file", function()
      local cfg, errs = config.load(dir .. "/absent.yaml")
      assert.is_nil(cfg)
      assert.same({ dir .. "/absent.yaml: cannot read: No such file or directory" }, { unpack(errs) })
    end)

    it("names the connections defined when one is unknown", function()
      local cfg = assert(load_text(dir, "connections:\n  b: { type: redis }\n  a: { type: redis }\n"))
      local c, err = cfg:connection("warehouse")
      assert.is_nil(c)
      assert.equal('unknown connection "warehouse" (' .. cfg.file .. ' defines a, b)', err)
    end)
  end)

  describe("secrets", function()
    it("never puts a secret into an error message", function()
      H.write(dir .. "/pw", CANARY .. "\n")
      local _, errs = load_text(dir, [[
connections:
  a:
    type: postgres
    user: u
    password: 12345678
    port: "${env:CANARY}"
    host: "${file:pw}"
    connect_timeout: "${env:CANARY}"
    database: ""
  b:
    type: postgres
    url: "postgres://u:]] .. CANARY .. [[@h:0/db"
  c:
    type: redis
    password: "]] .. CANARY .. [["
    database: "${env:CANARY}"
    colour: "]] .. CANARY .. [["
  d:
    type: redis
    password: { nested: "]] .. CANARY .. [[" }
]], { CANARY = CANARY })
      local all = joined(errs)
      assert.truthy(#errs >= 6, all)
      assert.falsy(all:find(CANARY, 1, true), all)
      assert.falsy(all:find("12345678", 1, true), all)
      assert.matches('connections.a.port: expected integer 1..65535, got "***"', all, 1, true)
      assert.matches("connections.a.password: expected a string (quote it in YAML)", all, 1, true)
    end)

    it("keeps a scalar out of a YAML tag error", function()
      local _, errs = load_text(dir, "connections:\n  a: { type: redis, password: !!int "
                                     .. CANARY .. " }\n")
      assert.equal(1, #errs)
      assert.matches("does not match tag", errs[1], 1, true)
      assert.falsy(errs[1]:find(CANARY, 1, true))
    end)

    it("describes a connection without its password", function()
      H.write(dir .. "/pw", CANARY)
      local cfg = assert(load_text(dir, [[
connections:
  pg: { type: postgres, url: "postgres://weir:]] .. CANARY .. [[@127.0.0.1:5432/db" }
  r: { type: redis, url: "redis://:${file:pw}@127.0.0.1:6379/0" }
  e: { type: postgres, user: "${env:WHO}", password: xyzzy-pw, host: h, database: d }
]], { WHO = "someone" }))
      assert.equal("postgres://weir@127.0.0.1:5432/db", config.describe(cfg.connections.pg))
      assert.equal("redis://127.0.0.1:6379/0", config.describe(cfg.connections.r))
      -- a user from ${env:} is a setting, shown as it is
      assert.equal("postgres://someone@h:5432/d", config.describe(cfg.connections.e))
      for _, c in pairs(cfg.connections) do
        assert.falsy(config.describe(c):find(CANARY, 1, true))
      end
    end)

    it("redacts env- and file-sourced secrets and URL passwords", function()
      H.write(dir .. "/pw", "from-file\n")
      local cfg = assert(load_text(dir, [[
connections:
  pg: { type: postgres, user: u, password: "${env:PW}" }
  r: { type: redis, url: "redis://:${file:pw}@h:1/0" }
  p: { type: postgres, url: "postgres://u:lit%2Bpw@h/db" }
]], { PW = "a.b%c(" }))
      local text = "pw=a.b%c( file=from-file lit=lit+pw enc=lit%2Bpw "
                   .. "dsn=postgres://x:other@h/d redis://:pw2@h:1 mysql://me@h"
      assert.equal("pw=*** file=*** lit=*** enc=*** dsn=postgres://x:***@h/d redis://:***@h:1"
                   .. " mysql://me@h", cfg:redact(text))
      assert.equal(config.redact(cfg, text), cfg:redact(text))
      -- the redactor the engine uses on every result says the same
      local redact = config.redactor(cfg)
      assert.equal(cfg:redact(text), redact(text))
      assert.equal("x=***", redact("x=from-file"))
      assert.equal(nil, redact(nil))
      -- with no secret, only URLs with a password change
      local plain = config.redactor(assert(load_text(dir, "connections: {}\n")))
      assert.equal("null", plain("null"))
      assert.equal("{\"u\":\"https:\\/\\/a.b\"}", plain("{\"u\":\"https:\\/\\/a.b\"}"))
      assert.equal("see postgres://u:***@h/db", plain("see postgres://u:p@ss@h/db"))
      assert.equal("{\"d\":\"postgres://u:***@h\"}", plain("{\"d\":\"postgres:\\/\\/u:p@h\"}"))
      -- URL masking alone
      assert.equal("see postgres://u:***@h/db", config.redact(nil, "see postgres://u:p@ss@h/db"))
    end)

    it("replaces the longest secret first", function()
      local cfg = assert(load_text(dir, [[
connections:
  a: { type: redis, password: "${env:SHORT}" }
  b: { type: redis, password: "${env:LONG}" }
]], { SHORT = "abc", LONG = "abcdef" }))
      assert.same({ "abcdef", "abc" }, cfg:secrets())
      assert.same({ "abcdef", "abc" }, config.secrets(cfg))
      assert.equal("x *** y *** z", cfg:redact("x abcdef y abc z"))
      assert.equal(0, count(cfg:redact("abcdefabc"), "def"))
    end)

    it("treats every password field and the metadata_url password as secrets", function()
      local cfg = assert(load_text(dir, [[
metadata_url: "postgres://m:${env:M}@h/meta"
connections:
  a: { type: redis, password: literal-pw }
]], { M = "mpw" }))
      assert.same({ "literal-pw", "mpw" }, cfg:secrets())
      assert.equal("*** ***", cfg:redact("literal-pw mpw"))
    end)

    it("raises on misuse", function()
      assert.has_error(function() config.redact(nil, {}) end)
      assert.has_error(function() config.describe("pg") end)
      assert.has_error(function() config.secrets({}) end)
      assert.has_error(function() config.load(42) end)
    end)
  end)
end)

describe("weir.config.secret_value", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function()
    ffi.C.unsetenv("WEIR_SECRET_DIRS")
    H.cleanup(dir)
  end)

  it("reads ${file:} only inside WEIR_SECRET_DIRS, never beside the reference's folder", function()
    H.write(dir .. "/beside", "no\n")
    os.execute("mkdir -p " .. H.q(dir .. "/secrets"))
    H.write(dir .. "/secrets/hook", "s3cret-value\n")
    assert.equal(0, ffi.C.setenv("WEIR_SECRET_DIRS", dir .. "/secrets", 1))
    assert.equal("s3cret-value", config.secret_value("${file:secrets/hook}", dir))
    local v, err = config.secret_value("${file:beside}", dir)
    assert.is_nil(v)
    assert.matches("outside the folders of WEIR_SECRET_DIRS", err)
    v, err = config.secret_value("${env:WEIR_NO_SUCH_VARIABLE}", dir)
    assert.is_nil(v)
    assert.matches("WEIR_NO_SUCH_VARIABLE is not set", err)
  end)
end)
