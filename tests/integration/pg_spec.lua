-- The PostgreSQL connector (weir.pg) against the real server that
-- scripts/services.sh starts: types both ways, streams, the sink modes,
-- the load ledger and fence, limits, errors, pooling.


local H = require("helpers")
local URL = (H.service("pg") or {}).url

local function url_cfg(url, db)
  local user, pw, host, port = url:match("^postgres://([^:]+):([^@]+)@([^:]+):(%d+)/")
  return { name = "pgtest", type = "postgres", host = host, hostaddr = host, port = tonumber(port),
           user = user, password = pw, database = db or "postgres", sslmode = "disable",
           pool = { max = 4 }, max_result_bytes = 1024 * 1024 }
end

H.describe_with("pg", "weir.pg", function()
  local pg, admin, db, cfg
  local NULL = require("weir.json").null

  setup(function()
    pg = require("weir.connectors.postgres")
    admin = pg.connect(url_cfg(URL))
    local name = "weir_t_" .. tostring(os.time()) .. "_" .. math.random(1, 1e6)
    admin:run("CREATE DATABASE " .. name)
    cfg = url_cfg(URL, name)
    db = pg.connect(cfg)
  end)

  teardown(function()
    if cfg then
      pg.close_all()
      pcall(function() admin:run("DROP DATABASE " .. cfg.database .. " WITH (FORCE)") end)
    end
  end)

  local function all(sql, params) return (db:all(sql, params)) end
  local function all2(h, sql, params) return (h:all(sql, params)) end
  local function pulled(pull)
    local rows = {}
    for b in pull do for _, r in ipairs(b) do rows[#rows + 1] = r end end
    return rows
  end

  it("decodes every mapped type, NULL as a sentinel", function()
    local r = all([[SELECT 1::int2 AS a, 2::int4 AS b, 9007199254740993::int8 AS big, 42::int8 AS small,
      12345678901234567890.123456789::numeric AS n, 1.5::float8 AS f, 'NaN'::float8 AS nan,
      'x'::text AS t, true AS yes, DATE '2026-01-02' AS d,
      TIMESTAMP '2026-01-02 03:04:05.5' AS ts, TIMESTAMPTZ '2026-01-02 03:04:05+02' AS tz,
      '{"a":[1,null]}'::jsonb AS j, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
      '\x00ff'::bytea AS by, ARRAY[1,NULL,3] AS arr, ARRAY['a,b','"q"'] AS sarr,
      NULL::text AS nothing]])[1]
    assert.equal(1, r.a); assert.equal(2, r.b)
    assert.equal("9007199254740993", r.big); assert.equal(42, r.small)
    assert.equal("12345678901234567890.123456789", r.n)
    assert.equal(1.5, r.f); assert.is_true(r.nan ~= r.nan)
    assert.equal("x", r.t); assert.is_true(r.yes)
    assert.equal("2026-01-02", r.d)
    assert.equal("2026-01-02 03:04:05.5", r.ts)
    assert.equal("2026-01-02 01:04:05+00", r.tz)
    assert.equal('{"a": [1, null]}', tostring(r.j)) -- a json value: the server's text
    assert.same({ 1, NULL }, r.j:decode().a)
    assert.equal("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", r.u)
    assert.equal("\0\255", r.by)
    assert.same({ 1, NULL, 3 }, r.arr)
    assert.same({ "a,b", '"q"' }, r.sarr)
    assert.equal(NULL, r.nothing)
  end)

  it("binds parameters of every type and round-trips them", function()
    db:run([[CREATE TABLE types (i2 int2, i4 int4, i8 int8, n numeric, f float8, t text, b bool,
      d date, ts timestamp, tz timestamptz, j jsonb, u uuid, by bytea, arr int4[], tarr text[])]])
    local vals = { 7, -8, "9007199254740993", "1.000000000000000000001", 0.1, "tab\there\\.",
                   false, "2026-03-04", "2026-03-04 05:06:07", "2026-03-04 05:06:07+00",
                   { k = "v", list = { 1, 2 } }, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                   "\0\1\2\\", { 1, NULL, 3 }, { "x y", "NULL", "" } }
    db:exec("INSERT INTO types VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)", vals)
    local r = all("SELECT * FROM types")[1]
    assert.equal(7, r.i2); assert.equal(-8, r.i4); assert.equal("9007199254740993", r.i8)
    assert.equal("1.000000000000000000001", r.n); assert.equal(0.1, r.f)
    assert.equal("tab\there\\.", r.t); assert.is_false(r.b)
    assert.equal("2026-03-04", r.d); assert.equal("2026-03-04 05:06:07", r.ts)
    assert.equal("2026-03-04 05:06:07+00", r.tz)
    assert.same({ k = "v", list = { 1, 2 } }, r.j:decode())
    assert.equal("\0\1\2\\", r.by)
    assert.same({ 1, NULL, 3 }, r.arr)
    assert.same({ "x y", "NULL", "" }, r.tarr)
    -- a parameter is a value, never SQL
    local n = all("SELECT count(*) AS n FROM types WHERE t = $1", { "x' OR '1'='1" })[1].n
    assert.equal(0, n)
  end)

  it("keeps JSON null inside a json value apart from SQL NULL", function()
    db:run("CREATE TABLE jnull (k int4, j jsonb)")
    db:exec("INSERT INTO jnull VALUES (1, $1), (2, $2)", { { x = NULL, y = { 1, NULL } }, NULL })
    -- the server sees JSON null inside row 1 and SQL NULL in row 2
    local s = all([[SELECT k, j IS NULL AS sql_null, jsonb_typeof(j->'x') AS x,
                    jsonb_typeof(j->'y'->1) AS y1 FROM jnull ORDER BY k]])
    assert.same({ k = 1, sql_null = false, x = "null", y1 = "null" }, s[1])
    assert.same({ k = 2, sql_null = true, x = NULL, y1 = NULL }, s[2])
    -- read back: a json value whose decode() holds ctx.NULL, against ctx.NULL itself
    local r = all("SELECT j FROM jnull ORDER BY k")
    assert.same({ x = NULL, y = { 1, NULL } }, r[1].j:decode())
    assert.equal(NULL, r[2].j)
  end)

  it("reads a json value that is JSON null itself apart from SQL NULL, and loads it back so", function()
    db:run("CREATE TABLE jtop (k int4, j json, jb jsonb, ja jsonb[])")
    db:run([[INSERT INTO jtop VALUES (1, 'null', 'null', ARRAY['null'::jsonb, NULL]),
             (2, NULL, NULL, NULL)]])
    for _, opts in ipairs({ {}, { binary = false }, { mode = "cursor" }, { mode = "rows" } }) do
      local rows = pulled((db:pull("SELECT * FROM jtop ORDER BY k", nil, nil, opts)))
      local a, b = rows[1], rows[2]
      -- JSON null is a json value whose text is null; SQL NULL is ctx.NULL
      assert.are_not.equal(NULL, a.j); assert.are_not.equal(NULL, a.jb)
      assert.equal("null", tostring(a.j)); assert.equal("null", tostring(a.jb))
      assert.equal(NULL, a.jb:decode())
      assert.equal("null", tostring(a.ja[1])); assert.equal(NULL, a.ja[2])
      assert.equal(NULL, b.j); assert.equal(NULL, b.jb); assert.equal(NULL, b.ja)
    end
    -- loaded back, in binary and in text COPY and as parameters
    db:run("CREATE TABLE jtop2 (LIKE jtop)")
    local pull, names = db:pull("SELECT * FROM jtop ORDER BY k")
    local load = function(binary)
      local p2, n2 = db:pull("SELECT * FROM jtop ORDER BY k")
      return db:load(p2, p2(), n2, nil, "jtop2", { binary = binary })
    end
    load(true); load(false)
    local rows = pulled(pull)
    assert.same({ "k", "j", "jb", "ja" }, names)
    db:exec("INSERT INTO jtop2 VALUES ($1, $2, $3, $4)", { rows[1].k, rows[1].j, rows[1].jb, rows[1].ja })
    assert.same({ { n = 3, j = 3, jb = 3, el = 3, sqlnull = 3 } },
                all([[SELECT count(*) AS n, count(*) FILTER (WHERE j::text = 'null') AS j,
                      count(*) FILTER (WHERE jb = 'null') AS jb,
                      count(*) FILTER (WHERE ja[1] = 'null' AND ja[2] IS NULL) AS el,
                      count(*) FILTER (WHERE ja[2] IS NULL) AS sqlnull FROM jtop2 WHERE k = 1]]))
    assert.equal(2, all("SELECT count(*) AS n FROM jtop2 WHERE k = 2 AND j IS NULL AND jb IS NULL "
                        .. "AND ja IS NULL")[1].n)
  end)

  it("streams a table with COPY and with a cursor, in batches", function()
    db:run("CREATE TABLE src (id int8 PRIMARY KEY, name text, score float8, at timestamptz, ok bool)")
    db:run("INSERT INTO src SELECT g, 'n' || g, g / 2.0, TIMESTAMPTZ '2026-01-01' + g * interval '1 s', "
           .. "g % 2 = 0 FROM generate_series(1, 2500) g")
    local rows = 0
    local pull, names = db:pull("SELECT * FROM src ORDER BY id", nil, function(n) rows = rows + n end)
    assert.same({ "id", "name", "score", "at", "ok" }, names)
    local got = pulled(pull)
    assert.equal(2500, #got); assert.equal(2500, rows)
    assert.same({ id = 2, name = "n2", score = 1, at = "2026-01-01 00:00:02+00", ok = true }, got[2])
    local cur = pulled((db:pull("SELECT id FROM src WHERE id > $1 ORDER BY id", { 2000 })))
    assert.equal(500, #cur); assert.equal(2001, cur[1].id)
  end)

  it("streams any statement that returns rows in single-row mode", function()
    db:run("CREATE TABLE ret (id serial PRIMARY KEY, v text)")
    local got = pulled((db:pull("INSERT INTO ret (v) SELECT 'x' || g FROM generate_series(1, $1) g RETURNING id, v",
                                { 2500 })))
    assert.equal(2500, #got)
    assert.same({ id = 1, v = "x1" }, got[1])
    local show = pulled((db:pull("SHOW TimeZone")))
    assert.same({ { TimeZone = "UTC" } }, show)
    local forced = pulled((db:pull("SELECT id FROM ret WHERE id <= $1 ORDER BY id", { 3 }, nil, { mode = "rows" })))
    assert.same({ { id = 1 }, { id = 2 }, { id = 3 } }, forced)
    local ok, err = pcall(db.pull, db, "SELECT $1::int", { 1 }, nil, { mode = "copy" })
    assert.is_false(ok)
    assert.matches("COPY cannot bind parameters", err)
  end)

  it("loads with append, replace, upsert (last row of a key wins) and replace_partition", function()
    local function from(list)
      local i = 0
      return function() i = i + 1; return list[i] end
    end
    local cols = { "id", "day", "v" }
    local res = db:load(from({}), { { id = 1, day = "a", v = "x" }, { id = 2, day = "b", v = "y" } },
                        cols, nil, "loaded", { mode = "append", key = "id" })
    assert.equal(2, res.rows)
    assert.equal("bigint", db:columns("loaded")[1].type)
    assert.same({ "id" }, db:primary_key("loaded"))
    res = db:load(from({}), { { id = 2, day = "b", v = "old" }, { id = 3, day = "b", v = "z" },
                              { id = 2, day = "b", v = "new" } }, cols, nil, "loaded", { mode = "upsert" })
    assert.equal(3, res.rows)
    local r = all("SELECT id, v FROM loaded ORDER BY id")
    assert.same({ { id = 1, v = "x" }, { id = 2, v = "new" }, { id = 3, v = "z" } }, r)
    db:load(from({}), { { id = 9, day = "b", v = "p" } }, cols, nil, "loaded",
            { mode = "replace_partition", partition = "day" })
    r = all("SELECT id FROM loaded ORDER BY id")
    assert.same({ { id = 1 }, { id = 9 } }, r)
    db:load(from({}), { { id = 5, day = "c", v = "only" } }, cols, nil, "loaded", { mode = "replace" })
    assert.same({ { id = 5 } }, all("SELECT id FROM loaded"))
  end)

  it("loads in binary COPY, switching to text for a value only the text form takes", function()
    db:run("CREATE TABLE bin (id int8, at timestamptz, f float8, ok bool, s text)")
    local rows = {
      { id = 1, at = "2026-01-02 03:04:05+00", f = 0.1, ok = true, s = "a\tb" },
      { id = 2, at = "2026-01-02 03:04:05.1234567+00", f = -1e300, ok = false, s = "" },
      { id = 3, at = "2026-01-02T03:04:05Z", f = 2.5, ok = NULL, s = "\\." },
    }
    local res = db:load(function() return nil end, rows, { "id", "at", "f", "ok", "s" }, nil, "bin", {})
    assert.equal(3, res.rows)
    local got = all("SELECT id, at, f, ok, s FROM bin ORDER BY id")
    assert.equal("2026-01-02 03:04:05+00", got[1].at)
    assert.equal("2026-01-02 03:04:05.123457+00", got[2].at)   -- rounded by the server's text input
    assert.equal("2026-01-02 03:04:05+00", got[3].at)
    assert.equal(0.1, got[1].f); assert.equal(-1e300, got[2].f)
    assert.equal(NULL, got[3].ok); assert.equal("\\.", got[3].s); assert.equal("a\tb", got[1].s)
    -- and reading it back in binary gives what the text path gives
    local bin = pulled((db:pull("SELECT * FROM bin ORDER BY id")))
    local txt = pulled((db:pull("SELECT * FROM bin ORDER BY id", nil, nil, { binary = false })))
    assert.same(txt, bin)
  end)

  it("never lets a data line \\. end a load early, and escapes control bytes", function()
    local rows = { { s = "\\." }, { s = "a\tb\nc\rd\\e" }, { s = "\\.\n" }, { s = "\1\127" } }
    db:load(function() return nil end, rows, { "s" }, nil, "dots", { mode = "append" })
    local got = all("SELECT s FROM dots")
    assert.equal(4, #got)
    for i, r in ipairs(rows) do assert.equal(r.s, got[i].s) end
  end)

  it("loads once per (run, task, load) and refuses a stale attempt", function()
    local fence = { run_id = "r1", task = "t", attempt = 2, seq = 1 }
    local rows = { { id = 1 }, { id = 2 } }
    local a = db:load(function() return nil end, rows, { "id" }, nil, "fenced", {}, fence)
    assert.is_false(a.skipped)
    local b = db:load(function() return nil end, rows, { "id" }, nil, "fenced", {}, fence)
    assert.is_true(b.skipped); assert.equal(2, b.rows)
    assert.equal(2, all("SELECT count(*) AS n FROM fenced")[1].n)
    local old = { run_id = "r1", task = "t", attempt = 1, seq = 2 }
    local ok, err = pcall(db.load, db, function() return nil end, rows, { "id" }, nil, "fenced", {}, old)
    assert.is_false(ok)
    assert.matches("stale", err)
    assert.is_true(require("weir.errors").permanent(err))
  end)

  it("quotes identifiers and refuses names over 63 bytes", function()
    local weird = 'we"ird; DROP TABLE src; --'
    db:load(function() return nil end, { { [weird] = 1 } }, { weird }, nil, weird, {})
    assert.equal(1, all('SELECT count(*) AS n FROM "we""ird; DROP TABLE src; --"')[1].n)
    assert.equal(2500, all("SELECT count(*) AS n FROM src")[1].n)
    local ok, err = pcall(db.load, db, function() return nil end, { { a = 1 } }, { "a" }, nil,
                          string.rep("x", 64), {})
    assert.is_false(ok)
    assert.matches("63", err)
  end)

  it("fails a too-large result with a limit error, while streaming it works", function()
    local ok, err = pcall(db.all, db, "SELECT repeat('x', 1000) FROM generate_series(1, 5000)")
    assert.is_false(ok)
    assert.matches("max_result", err)
    local rows = pulled((db:pull("SELECT repeat('x', 1000) AS s FROM generate_series(1, 5000)")))
    assert.equal(5000, #rows)
  end)

  it("names the connection and the SQLSTATE, says what is retryable, hides the password", function()
    local ok, err = pcall(db.exec, db, "SELEC 1")
    assert.is_false(ok)
    assert.matches("^postgres pgtest: %[42601%]", err)
    assert.is_true(require("weir.errors").permanent(err))
    assert.equal("sql", err.code)
    assert.equal("42601", err.sqlstate)
    assert.is_true(pg.transient("[08006] connection lost"))
    assert.is_true(pg.transient("[40001] could not serialize"))
    assert.is_false(pg.transient("[23505] duplicate key"))
    local bad = url_cfg(URL, cfg.database)
    bad.name, bad.password = "wrongpw", "canary-" .. math.random(1e6, 9e6)
    ok, err = pcall(function() pg.connect(bad):exec("SELECT 1") end)
    assert.is_false(ok)
    assert.matches("password authentication failed", err)
    assert.is_nil(tostring(err):find(bad.password, 1, true))
  end)

  it("classifies a refused connection as transient, a syntax error as permanent", function()
    local refused = url_cfg(URL, cfg.database)
    refused.name, refused.port = "refused", 1 -- nothing listens there
    local ok, err = pcall(function() pg.connect(refused):exec("SELECT 1") end)
    assert.is_false(ok)
    local errors = require("weir.errors")
    assert.is_true(errors.is(err))
    assert.equal("io", err.code)
    assert.equal("08001", err.sqlstate)
    assert.is_true(err.transient)
    assert.is_false(errors.permanent(err))
    assert.matches("^postgres refused: %[08001%] cannot connect", tostring(err))
    ok, err = pcall(db.exec, db, "SELECT * FROM no_such_table_here")
    assert.is_false(ok)
    assert.equal("sql", err.code)
    assert.equal("42P01", err.sqlstate)
    assert.is_false(err.transient)
    assert.is_true(errors.permanent(err))
  end)

  it("refuses a connection used after its transaction or release", function()
    local kept
    db:transaction(function(tx) kept = tx end)
    local ok, err = pcall(kept.exec, kept, "SELECT 1")
    assert.is_false(ok)
    assert.matches("already over", err)
    -- the native layer refuses a connection given back, and anything but
    -- a connection (an address as a number above all)
    local native = require("weir._native")
    ok, err = pcall(native.pg_exec, kept.conn, "SELECT 1", nil, 0)
    assert.is_false(ok)
    assert.matches("not acquired", err)
    native.pg_release(kept.conn, true) -- safe twice
    for _, bad in ipairs({ 12345678, "conn", {}, io.stdout }) do
      ok, err = pcall(native.pg_exec, bad, "SELECT 1", nil, 0)
      assert.is_false(ok)
      assert.matches("weir.pg.conn expected", err)
    end
  end)

  it("lets errors of the function given to transaction pass through, retryable", function()
    local ok, err = pcall(db.transaction, db, function() error("my own problem", 0) end)
    assert.is_false(ok)
    assert.equal("my own problem", err)
    assert.is_false(require("weir.errors").permanent(err))
  end)

  it("refuses a load whose number went to another table in an earlier attempt", function()
    local fence = { run_id = "r-order", task = "t", attempt = 1, seq = 1 }
    db:load(function() return nil end, { { id = 1 } }, { "id" }, nil, "order_b", {}, fence)
    local later = { run_id = "r-order", task = "t", attempt = 2, seq = 1 }
    local ok, err = pcall(db.load, db, function() return nil end, { { id = 1 } }, { "id" }, nil,
                          "order_a", {}, later)
    assert.is_false(ok)
    assert.matches("same order", err)
    assert.is_true(require("weir.errors").permanent(err))
  end)

  it("refuses results wider than 1600 columns", function()
    local cols = {}
    for i = 1, 1650 do cols[i] = i .. " AS c" .. i end
    local ok, err = pcall(db.all, db, "SELECT " .. table.concat(cols, ", "))
    assert.is_false(ok)
    assert.matches("1650 columns", err)
  end)

  it("rolls a transaction back when its function raises", function()
    db:run("CREATE TABLE tx (v int)")
    local ok = pcall(db.transaction, db, function(tx)
      tx:exec("INSERT INTO tx VALUES ($1)", { 1 })
      error("boom")
    end)
    assert.is_false(ok)
    assert.equal(0, all("SELECT count(*) AS n FROM tx")[1].n)
    db:transaction(function(tx) tx:exec("INSERT INTO tx VALUES ($1)", { 2 }) end)
    assert.equal(1, all("SELECT count(*) AS n FROM tx")[1].n)
  end)

  it("bounds the pool, and retires idle and old connections", function()
    local c = url_cfg(URL, cfg.database)
    c.name = "pooltest"
    c.pool = { max = 1, idle_timeout_ms = 200, max_lifetime_ms = 60000, min = 0 }
    local h = pg.connect(c)
    local pid1 = all2(h, "SELECT pg_backend_pid() AS p")[1].p
    -- max = 1: a second connection while the first is busy is refused
    local ok, err = pcall(h.transaction, h, function() h:exec("SELECT 1") end)
    assert.is_false(ok)
    assert.matches("pool.max", err)
    assert.equal(pid1, all2(h, "SELECT pg_backend_pid() AS p")[1].p)
    -- idle longer than idle_timeout (and above min): closed, a new one opened
    os.execute("sleep 0.4")
    h:exec("SELECT 1")  -- the sweep runs when a connection is given back
    os.execute("sleep 0.4")
    local pid2 = all2(h, "SELECT pg_backend_pid() AS p")[1].p
    assert.are_not.equal(pid1, pid2)
    -- past max_lifetime: replaced on checkout
    c = url_cfg(URL, cfg.database)
    c.name = "pooltest2"
    c.pool = { max = 2, max_lifetime_ms = 300 }
    h = pg.connect(c)
    local p1 = all2(h, "SELECT pg_backend_pid() AS p")[1].p
    assert.equal(p1, all2(h, "SELECT pg_backend_pid() AS p")[1].p)
    os.execute("sleep 0.5")
    assert.are_not.equal(p1, all2(h, "SELECT pg_backend_pid() AS p")[1].p)
  end)

  it("reuses pooled connections and prepared statements", function()
    local before = all("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()")[1].n
    for i = 1, 200 do db:exec("SELECT $1::int + 1", { i }) end
    local after = all("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()")[1].n
    assert.equal(before, after)
    local prepared = all("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1",
                         { "SELECT $1::int + 1" })[1].n
    assert.equal(1, prepared)
  end)
end)
