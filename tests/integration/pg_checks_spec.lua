-- Data-quality checks on PostgreSQL tables (docs/quality.md, ADR 33): run
-- by the server, the cheap ones in one scan, values bound and names
-- quoted; through real `weir run` processes and, for the scan count, the
-- checks module itself over a trusted connection.
local H = require("helpers")
local json = require("weir.json")

local PG = H.service("pg") or {}
local URL, PORT, PW = PG.url, PG.port, PG.password

local function psql(sql)
  return H.output("psql " .. H.q(URL) .. " -Atqc " .. H.q(sql) .. " 2>&1"):gsub("%s+$", "")
end

H.describe_with("pg", "checks on PostgreSQL", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("run in the server on the table a task loaded, with failing samples", function()
    psql([[DROP TABLE IF EXISTS ck_orders, ck_customers;
           CREATE TABLE ck_customers (id int PRIMARY KEY); INSERT INTO ck_customers VALUES (1), (2)]])
    H.write(dir .. "/weir.yaml", H.yaml("pg", "wh", PORT))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "pgck", tasks = {
  load = task {
    run = function(ctx)
      return ctx.rows({
        { id = 1, customer_id = 1, email = "a@x.org", country = "O'Brien", amount = 5, api_token = "tok1" },
        { id = 2, customer_id = 9, email = "b@x.org", country = "DE", amount = 7, api_token = "tok2" },
        { id = 3, customer_id = 2, email = "nope", country = "DE", amount = 2000000, api_token = "tok3" },
      }, { columns = { "id", "customer_id", "email", "country", "amount", "api_token" } })
        :into(ctx.sink("wh"), "ck_orders")
    end,
    checks = {
      { "row_count", min = 3 },
      { "not_null", columns = { "id", "email" } },
      { "unique", column = "id" },
      { "unique", columns = { "country", "id" }, name = "pair" },
      { "accepted_values", column = "country", values = { "O'Brien", "DE" } },
      { "range", column = "amount", min = 0, max = 1e6 },
      { "pattern", column = "email", pattern = "^[^@]+@[^@]+$" },
      { "relationship", column = "customer_id", to = "ck_customers.id" },
      { "freshness", column = "amount", max_age = "1d", severity = "warn" },
      { "sql", query = "SELECT id FROM ck_orders WHERE amount > $1", params = { 1000 },
        name = "big", severity = "warn" },
      { "custom", name = "sum", run = function(ctx, ds)
          local r = ds.db:rows("SELECT sum(amount) AS s FROM ck_orders")
          return { ok = true, observed = r[1].s }
        end },
    },
  },
} }]])
    local code = H.weir(dir, "run p.lua", { WEIR_PW = PW })
    assert.equal(1, code)
    local run = H.show(dir, H.last_run(dir))
    local t = H.task(run, "load")
    assert.equal(1, t.attempts)
    local by = {}
    for _, c in ipairs(t.attempt_list[1].checks) do by[c.name] = c end
    assert.same({ "pass", 3 }, { by.row_count.status, by.row_count.observed })
    assert.equal("pass", by["not_null(id,email)"].status)
    assert.equal("pass", by["unique(id)"].status)
    assert.equal("pass", by.pair.status)
    -- a value with a quote is a bound value like any other
    assert.equal("pass", by["accepted_values(country)"].status)
    assert.same({ "fail", 1, 2000000 }, { by["range(amount)"].status, by["range(amount)"].observed,
                                         by["range(amount)"].samples[1].amount })
    assert.same({ "fail", 1, "nope" }, { by["pattern(email)"].status, by["pattern(email)"].observed,
                                        by["pattern(email)"].samples[1].email })
    local rel = by["relationship(customer_id->ck_customers.id)"]
    assert.same({ "fail", 1, 9 }, { rel.status, rel.observed, rel.samples[1].customer_id })
    assert.equal("[masked]", rel.samples[1].api_token)
    -- amount is no time: the check could not run, and says why
    assert.equal("error", by["freshness(amount)"].status)
    assert.matches("extract", by["freshness(amount)"].message)
    assert.same({ "warn", 1 }, { by.big.status, by.big.observed })
    assert.same({ "pass", 2000012 }, { by.sum.status, tonumber(by.sum.observed) })
    assert.equal("postgres:wh#ck_orders", rel.dataset)
    assert.matches("range(amount): 1 row(s) out of range", t.error, 1, true)
    -- the load stays committed
    assert.equal("3", psql("SELECT count(*) FROM ck_orders"))
  end)

  it("combine six typical checks into one query, one sequential scan", function()
    psql([[DROP TABLE IF EXISTS "ck scan""t";
           CREATE TABLE "ck scan""t" AS SELECT i AS id, 'u' || i || '@x.org' AS email,
             (ARRAY['DE','FR','IT'])[1 + i % 3] AS country, (i % 1000)::numeric AS amount,
             now() - (i || ' seconds')::interval AS updated_at
           FROM generate_series(1, 20000) i]])
    local cfg = assert(require("weir.store.postgres").config(URL))
    cfg.name = "wh"
    local pg = require("weir.connectors.postgres")
    local D = pg.dataset({ h = pg.connect(cfg), cfg = cfg }, 'ck scan"t')
    local sent = {}
    local all = D.T.all
    D.T.all = function(sql, params)
      sent[#sent + 1] = { sql = sql, params = params }
      return all(sql, params)
    end
    local checks = require("weir.checks")
    local list = {
      { check = "row_count", min = 1 },
      { check = "not_null", column = "email" },
      { check = "unique", column = "id" },
      { check = "accepted_values", column = "country", values = { "DE", "FR", "IT" } },
      { check = "range", column = "amount", min = 0, max = 1e6 },
      { check = "freshness", column = "updated_at", max_age = "1d" },
    }
    local res = checks.run(D, list, function() end)
    for _, r in ipairs(res) do assert.equal("pass", r.status, r.name .. ": " .. tostring(r.message)) end
    assert.equal("20000", res[1].observed)
    assert.equal(1, #sent)
    -- no value is in the text: they are bound
    assert.is_nil(sent[1].sql:find("'DE'", 1, true))
    assert.same({ "DE", "FR", "IT", 0, 1e6 }, { unpack(sent[1].params, 1, 5) })
    local plan = D.T.all("EXPLAIN (FORMAT JSON) " .. sent[1].sql, sent[1].params)
    local text = json.encode(plan)
    local _, scans = text:gsub("Seq Scan", "")
    assert.equal(1, scans, text)
    pg.close_all()
  end)

  it("keep the parameters of the other checks in place when one cannot be built", function()
    psql([[DROP TABLE IF EXISTS ck_params; CREATE TABLE ck_params (a int, b text);
           INSERT INTO ck_params VALUES (1, 'x'), (5, 'y')]])
    local cfg = assert(require("weir.store.postgres").config(URL))
    cfg.name = "wh"
    local pg = require("weir.connectors.postgres")
    local D = pg.dataset({ h = pg.connect(cfg), cfg = cfg }, "ck_params")
    local sent, all = 0, D.T.all
    D.T.all = function(...) sent = sent + 1; return all(...) end
    local res = require("weir.checks").run(D, {
      { check = "range", column = "a", min = 0, max = 3 },
      { check = "accepted_values", column = string.rep("c", 64), values = { "p", "q" } },
      { check = "accepted_values", column = "b", values = { "x", "y" } },
    }, function() end)
    assert.same({ "fail", "1" }, { res[1].status, res[1].observed })
    assert.equal("error", res[2].status)
    assert.matches("PostgreSQL's limit is 63", res[2].message, 1, true)
    assert.same({ "pass", "0" }, { res[3].status, res[3].observed })
    -- the scan of the two that can run, and the failing one's samples
    assert.equal(2, sent)
    pg.close_all()
  end)
end)
