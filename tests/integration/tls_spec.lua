-- TLS with certificate checks from sandboxed workers, on the real servers
-- of scripts/services.sh (their certificates: a throwaway CA, a server
-- certificate for "localhost" only, a client certificate for the role
-- weir_cert, and another CA that signed nothing of theirs). The
-- supervisor reads weir.yaml's tls files; tasks can neither open them nor
-- see the private key anywhere (docs/adr/0015).
local H = require("helpers")

local PG = H.service("pg") or {}
local RD = H.service("redis") or {}
local TLS = os.getenv("WEIR_TEST_TLS_DIR")
local RPORT = os.getenv("WEIR_TEST_REDISS_PORT")

local function psql(url, sql)
  return H.output("psql " .. H.q(url) .. " -Atqc " .. H.q(sql) .. " 2>&1"):gsub("%s+$", "")
end

-- the certificates, copied beside weir.yaml
local function certs(dir)
  for _, f in ipairs({ "ca.crt", "other-ca.crt", "client.crt", "client.key" }) do
    assert(H.succeeds("cp " .. H.q(TLS .. "/" .. f) .. " " .. H.q(dir)))
  end
end

-- run pipeline source src with weir.yaml yaml in dir: the run's record
local function run(dir, yaml, src)
  H.write(dir .. "/weir.yaml", yaml)
  H.write(dir .. "/p.lua", src)
  local code, out, err = H.weir(dir, "run p.lua", { WEIR_PW = PG.password, WEIR_RPW = RD.password })
  local r = H.show(dir, H.last_run(dir))
  return r, code, out .. err
end

local PG_TASK = [[
return pipeline { name = "pgtls", tasks = { t = task { retries = 0, run = function(ctx)
  local r = ctx.source("wh"):rows("SELECT current_user AS u, ssl FROM pg_stat_ssl "
                                  .. "WHERE pid = pg_backend_pid()")
  return r[1].u .. " " .. tostring(r[1].ssl)
end } } }]]

local function pg_yaml(o)
  return ([[
connections:
  wh:
    type: postgres
    host: %s
    port: %s
    user: %s
    %s
    database: postgres
    sslmode: %s
    tls: { %s }
]]):format(o.host or "localhost", PG.port, o.user or "weir",
           (o.user or "weir") == "weir" and 'password: "${env:WEIR_PW}"' or "",
           o.sslmode or "verify-full", o.tls or "ca: ca.crt")
end

H.describe_with(TLS and "pg", "TLS to PostgreSQL", function()
  local dir
  before_each(function() dir = H.tmpdir(); certs(dir) end)
  after_each(function() H.cleanup(dir) end)

  it("connects with verify-full and the CA that signed the server's certificate", function()
    local r, code, all = run(dir, pg_yaml({}), PG_TASK)
    assert.equal(0, code, all)
    assert.equal("weir true", H.task(r, "t").output)
  end)

  it("refuses a server its CA did not sign, saying why", function()
    local r, code = run(dir, pg_yaml({ tls = "ca: other-ca.crt" }), PG_TASK)
    assert.equal(1, code)
    assert.matches("certificate verify failed", H.task(r, "t").error, 1, true)
  end)

  it("refuses a certificate for another host name with verify-full, not with verify-ca", function()
    local r, code = run(dir, pg_yaml({ host = "127.0.0.1" }), PG_TASK)
    assert.equal(1, code)
    assert.matches('does not match host name "127.0.0.1"', H.task(r, "t").error, 1, true)
    local r2, code2, all = run(dir, pg_yaml({ host = "127.0.0.1", sslmode = "verify-ca" }), PG_TASK)
    assert.equal(0, code2, all)
    assert.equal("weir true", H.task(r2, "t").output)
  end)

  it("logs in with a client certificate, and not without it", function()
    local tls = "ca: ca.crt, cert: client.crt, key: client.key"
    local r, code, all = run(dir, pg_yaml({ user = "weir_cert", tls = tls }), PG_TASK)
    assert.equal(0, code, all)
    assert.equal("weir_cert true", H.task(r, "t").output)
    local r2, code2 = run(dir, pg_yaml({ user = "weir_cert" }), PG_TASK)
    assert.equal(1, code2)
    assert.matches("requires a valid client certificate", H.task(r2, "t").error, 1, true)
  end)

  it("refuses verify-full without a CA, and says which file is no certificate", function()
    H.write(dir .. "/weir.yaml", pg_yaml({ tls = "cert: client.crt, key: client.key" }))
    H.write(dir .. "/p.lua", PG_TASK)
    local code, _, err = H.weir(dir, "run p.lua", { WEIR_PW = PG.password })
    assert.not_equal(0, code)
    assert.matches("verify-full needs the CA", err, 1, true)
    H.write(dir .. "/weir.yaml", pg_yaml({ tls = "ca: client.key" }))
    code, _, err = H.weir(dir, "run p.lua", { WEIR_PW = PG.password })
    assert.not_equal(0, code)
    assert.matches('ca file "client.key" holds no PEM certificate', err, 1, true)
    assert.not_matches("PRIVATE KEY", err, 1, true)
  end)

  it("keeps the files from tasks and the private key out of every output and the store", function()
    local tls = "ca: ca.crt, cert: client.crt, key: client.key"
    local r = run(dir, pg_yaml({ user = "weir_cert", tls = tls }), [[
return pipeline { name = "steal", tasks = {
  key = task { retries = 0, run = function(ctx) return ctx.jsonl("client.key"):count() end },
  csv = task { retries = 0, run = function(ctx) return ctx.csv("client.key"):count() end },
  ca = task { retries = 0, run = function(ctx) return ctx.csv("ca.crt"):count() end },
  crt = task { retries = 0, run = function(ctx)
    return ctx.rows({ { a = 1 } }):to_csv("client.crt")
  end },
  db = task { retries = 0, run = function(ctx)
    error(ctx.source("wh"):rows("SELECT current_user AS u")[1].u)
  end } } }]])
    for _, name in ipairs({ "key", "csv", "ca", "crt" }) do
      assert.matches("is protected", H.task(r, name).error, 1, true)
    end
    assert.matches("weir_cert", H.task(r, "db").error, 1, true)
    -- the key's body lines appear nowhere weir writes
    local line = H.read(dir .. "/client.key"):match("\n([^\n-]+)\n")
    assert.truthy(line and #line > 40)
    assert.equal("", H.output("grep -rlF " .. H.q(line) .. " " .. H.q(dir .. "/.weir")
                              .. " 2>/dev/null || true"))
    local code, out, err = H.weir(dir, "show " .. r.run_id .. " --json")
    assert.equal(0, code)
    assert.not_matches(line, out .. err, 1, true)
  end)

  it("lets the metadata store verify the server too", function()
    local db = "tls_store"
    psql(PG.url, "DROP DATABASE IF EXISTS " .. db .. " WITH (FORCE)")
    psql(PG.url, "CREATE DATABASE " .. db)
    local url = ("postgres://weir:%s@localhost:%s/%s?sslmode=verify-full&sslrootcert=%s")
                :format(PG.password, PG.port, db, TLS .. "/ca.crt")
    H.write(dir .. "/p.lua", [[
return pipeline { name = "st", tasks = { t = task { run = function() return 1 end } } }]])
    local code, out, err = H.weir(dir, "run p.lua", { WEIR_METADATA_URL = url })
    assert.equal(0, code, out .. err)
    assert.equal("1", psql(PG.url:gsub("/postgres$", "/" .. db),
                           "SELECT count(*) FROM weir.runs WHERE status = 'success'"))
    local bad = url:gsub("ca%.crt", "other-ca.crt")
    code, out, err = H.weir(dir, "run p.lua", { WEIR_METADATA_URL = bad })
    assert.not_equal(0, code)
    assert.matches("certificate verify failed", out .. err, 1, true)
    psql(PG.url, "DROP DATABASE " .. db .. " WITH (FORCE)")
  end)
end)

H.describe_with(TLS and "redis", "TLS to Redis", function()
  local dir
  before_each(function() dir = H.tmpdir(); certs(dir) end)
  after_each(function() H.cleanup(dir) end)

  local function yaml(host, tls)
    return ([[
connections:
  rd:
    type: redis
    url: "rediss://:${env:WEIR_RPW}@%s:%s/3"
    tls: { %s }
]]):format(host, RPORT, tls)
  end
  local SRC = [[
return pipeline { name = "rtls", tasks = { t = task { retries = 0, run = function(ctx)
  local r = ctx.sink("rd")
  r:command("SET", "tls_spec", "over tls")
  return r:command("GET", "tls_spec")
end } } }]]

  it("works over rediss:// with the CA, and with a client certificate", function()
    local r, code, all = run(dir, yaml("localhost", "ca: ca.crt"), SRC)
    assert.equal(0, code, all)
    assert.equal("over tls", H.task(r, "t").output)
    r, code, all = run(dir, yaml("localhost", "ca: ca.crt, cert: client.crt, key: client.key"), SRC)
    assert.equal(0, code, all)
    assert.equal("over tls", H.task(r, "t").output)
  end)

  it("refuses a server its CA did not sign, or with another host name", function()
    local r, code = run(dir, yaml("localhost", "ca: other-ca.crt"), SRC)
    assert.equal(1, code)
    assert.matches('redis "rd": tls: certificate verify failed', H.task(r, "t").error, 1, true)
    r, code = run(dir, yaml("127.0.0.1", "ca: ca.crt"), SRC)
    assert.equal(1, code)
    assert.matches("certificate verify failed: IP address mismatch", H.task(r, "t").error, 1, true)
  end)
end)
