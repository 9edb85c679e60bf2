-- weir.lineage (dataset names, the tables a query reads, the lineage
-- tree), weir.openlineage (run events checked against the OpenLineage
-- specification's RunEvent schema; the exporter's queue, retries and
-- drops) and weir.picture (weir graph, weir show --timeline).
local lineage = require("weir.lineage")
local ol = require("weir.openlineage")
local picture = require("weir.picture")
local json = require("weir.json")
local schema = require("weir.schema")
local fakes = require("fakes")

describe("weir.lineage names", function()
  it("normalizes what a user writes to the names weir records", function()
    local cases = {
      { "postgresql://alice:pw@DB.Example:5432/shop/sales.orders",
        "postgres://db.example:5432/shop/sales.orders" },
      { "postgres://db/shop/orders", "postgres://db:5432/shop/public.orders" },
      { "postgres://[::1]:6000/shop", "postgres://[::1]:6000/shop" },
      { "redis://:pw@Cache:6380/2/user:*", "redis://cache:6380/2/user:*" },
      { "redis://cache/events", "redis://cache:6379/0/events" },
      { "  file:./data/../data/in.csv ", "file:data/in.csv" },
      { "file:/proj/data/in.csv", "file:data/in.csv" },
      { "file:/elsewhere/in.csv", "file:/elsewhere/in.csv" },
      { "sqlite:./out/db.sqlite#People", "sqlite:out/db.sqlite#people" },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], lineage.normalize(c[1], "/proj"), c[1])
      -- canonical names are fixed points
      assert.equal(c[2], lineage.normalize(c[2], "/proj"), c[2])
    end
    for _, bad in ipairs({ "ftp://x/y", "postgres://host", "redis://host", "sqlite:a.db",
                           "orders" }) do
      local n, err = lineage.normalize(bad)
      assert.is_nil(n, bad)
      assert.matches("bad dataset", err)
    end
  end)

  it("never keeps a user or password of a URL", function()
    for _, u in ipairs({ "postgres://u:hunter2@h/db/t", "postgresql://u:hunter2@h:1/db/s.t",
                         "redis://:hunter2@h/0/k", "redis://u:hunter2@h:1/k" }) do
      local n = assert(lineage.normalize(u))
      assert.is_nil(n:find("hunter2", 1, true), n)
      assert.is_nil(n:find("u:", 1, true), n)
    end
  end)

  it("builds names from connections, without their credentials", function()
    local cfg = { type = "postgres", host = "PG.local", port = 5432, database = "w",
                  user = "weir", password = "hunter2", hostaddr = "10.0.0.1" }
    assert.equal("postgres://pg.local:5432/w/s.t", lineage.postgres(cfg, "s", "t"))
    assert.equal("postgres://pg.local:5432/w", lineage.postgres(cfg))
    assert.equal("redis://[::1]:6379/0/k", lineage.redis({ host = "::1" }, "k"))
    assert.equal("redis://r:1/3/q", lineage.redis({ host = "r", port = 1, database = 3,
                                                    password = "hunter2" }, "q"))
    assert.equal("file:a/b.csv", lineage.file("/p/a/./b.csv", "/p"))
    assert.equal("sqlite:db.sqlite#t", lineage.sqlite("/p/db.sqlite", "/p", "T"))
  end)

  it("names the keys a Redis load wrote by their common prefix", function()
    local p
    for _, k in ipairs({ "user:17", "user:18", "user:2" }) do p = lineage.key_pattern(p, k) end
    assert.equal("user:*", p)
    assert.equal("one", lineage.key_pattern(nil, "one"))
    assert.equal("one", lineage.key_pattern("one", "one"))
    assert.equal("*", lineage.key_pattern("abc", "xyz"))
  end)
end)

describe("weir.lineage.sql_tables", function()
  local function names(sql)
    local out = {}
    for i, t in ipairs(lineage.sql_tables(sql)) do out[i] = (t.schema and t.schema .. "." or "") .. t.name end
    return out
  end

  it("finds the tables after FROM and JOIN, comma lists included", function()
    assert.same({ "orders" }, names("SELECT * FROM Orders WHERE id = $1"))
    assert.same({ "a", "b", "c" }, names("select x from a, b bb, c as cc"))
    assert.same({ "s.orders", "customers" },
                names("SELECT o.id FROM s.orders o JOIN customers c ON c.id = o.cid"))
    assert.same({ "Big.T" }, names('SELECT 1 FROM "Big"."T"'))
    assert.same({ "t" }, names("SELECT * FROM ONLY t"))
  end)

  it("leaves out WITH queries, subqueries, functions, strings and comments", function()
    assert.same({ "raw", "d" },
                names([[WITH x AS (SELECT * FROM raw), y AS (SELECT 1)
                        SELECT * FROM x JOIN y ON true LEFT JOIN generate_series(1, 2) g ON true
                        WHERE v IN (SELECT z FROM d) -- FROM nope
                        /* JOIN nah */ AND s = 'from q']]))
    assert.same({}, names("SELECT 1"))
    assert.same({}, names("SELECT * FROM (SELECT 1) AS s"))
  end)
end)

describe("weir.lineage.tree", function()
  local edges = {
    { pipeline = "ingest", task = "load", dataset = "file:in.csv", role = "input" },
    { pipeline = "ingest", task = "load", dataset = "sqlite:w.db#raw", role = "output" },
    { pipeline = "model", task = "clean", dataset = "sqlite:w.db#raw", role = "input" },
    { pipeline = "model", task = "clean", dataset = "sqlite:w.db#clean", role = "output" },
    { pipeline = "report", task = "send", dataset = "sqlite:w.db#clean", role = "input" },
    -- a cycle: send writes back what load reads
    { pipeline = "report", task = "send", dataset = "file:in.csv", role = "output" },
  }

  it("goes upstream through writers and downstream through readers", function()
    local t = lineage.tree(edges, "sqlite:w.db#raw")
    assert.equal(1, #t.upstream)
    assert.same({ "ingest", "load" }, { t.upstream[1].pipeline, t.upstream[1].task })
    assert.equal("file:in.csv", t.upstream[1].datasets[1].dataset)
    local send = t.upstream[1].datasets[1].upstream[1]
    assert.same({ "report", "send" }, { send.pipeline, send.task })
    local clean = t.downstream[1]
    assert.same({ "model", "clean" }, { clean.pipeline, clean.task })
    assert.equal("sqlite:w.db#clean", clean.datasets[1].dataset)
    -- the cycle stops where a dataset comes back
    local again = clean.datasets[1].downstream[1].datasets[1]
    assert.equal("file:in.csv", again.dataset)
    local last = again.downstream[1].datasets[1]
    assert.equal("sqlite:w.db#raw", last.dataset)
    assert.truthy(last.seen)
    local text = table.concat(lineage.tree_lines(t), "\n")
    assert.matches("written by ingest.load", text, 1, true)
    assert.matches("read by model.clean", text, 1, true)
  end)

  it("says when nothing recorded touches a dataset", function()
    local lines = lineage.tree_lines(lineage.tree(edges, "file:none.csv"))
    assert.matches("no task of any recorded run writes it", table.concat(lines, "\n"), 1, true)
  end)
end)

-- The RunEvent of the OpenLineage specification (spec/OpenLineage.json,
-- 2-0-2), reduced to what an event must have: BaseEvent's eventTime,
-- producer and schemaURL; a run with a UUID runId; a job with namespace
-- and name; datasets with namespace and name; every facet with _producer
-- and _schemaURL; the schema facet's fields with names.
local RUN_EVENT = json.decode([[{
  "$defs": {
    "facet": { "type": "object", "required": ["_producer", "_schemaURL"],
      "properties": { "_producer": { "type": "string", "pattern": "^https?://" },
                      "_schemaURL": { "type": "string", "pattern": "^https?://" } } },
    "facets": { "type": "object", "additionalProperties": { "$ref": "#/$defs/facet" } },
    "dataset": { "type": "object", "required": ["namespace", "name"],
      "properties": { "namespace": { "type": "string", "minLength": 1 },
                      "name": { "type": "string", "minLength": 1 },
                      "facets": { "$ref": "#/$defs/facets" },
                      "inputFacets": { "$ref": "#/$defs/facets" },
                      "outputFacets": { "$ref": "#/$defs/facets" } } }
  },
  "type": "object",
  "required": ["eventTime", "producer", "schemaURL", "run", "job"],
  "properties": {
    "eventType": { "enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"] },
    "eventTime": { "type": "string",
      "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$" },
    "producer": { "type": "string", "pattern": "^https?://" },
    "schemaURL": { "type": "string", "pattern": "^https://openlineage\\.io/spec/" },
    "run": { "type": "object", "required": ["runId"],
      "properties": { "runId": { "type": "string",
        "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$" },
        "facets": { "$ref": "#/$defs/facets" } } },
    "job": { "type": "object", "required": ["namespace", "name"],
      "properties": { "namespace": { "type": "string", "minLength": 1 },
                      "name": { "type": "string", "minLength": 1 },
                      "facets": { "$ref": "#/$defs/facets" } } },
    "inputs": { "type": "array", "items": { "$ref": "#/$defs/dataset" } },
    "outputs": { "type": "array", "items": { "$ref": "#/$defs/dataset" } }
  }
}]])
local validator = assert(schema.compile(RUN_EVENT))

--- Whether ev (decoded from its JSON text) is a valid RunEvent.
local function valid(ev)
  local text = json.encode(ev)
  local ok, errs = validator:validate(json.decode(text))
  return ok, schema.format_errors(errs)
end

describe("weir.openlineage events", function()
  local datasets = {
    { dataset = "postgres://pg:5432/shop/public.orders", role = "input", rows = 10 },
    { dataset = "sqlite:out/w.db#orders", role = "output", rows = 10,
      columns = { { name = "id", type = "integer" }, { name = "email", type = "text" } } },
  }
  local function attempt(extra)
    local o = { namespace = "weir", pipeline = "shop", task = "load", run_id = "R1",
                attempt = 2, at = 1796625365039.5, datasets = datasets }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  it("are RunEvents of the specification, for every kind", function()
    for _, kind in ipairs({ "START", "COMPLETE", "FAIL" }) do
      local ev = ol.event(kind, attempt({ error = "boom" }))
      local ok, why = valid(ev)
      assert.is_true(ok, why)
      assert.equal(kind, ev.eventType)
    end
    -- a START has no datasets yet, and its arrays stay arrays
    local text = json.encode(ol.event("START", attempt({ datasets = {} })))
    assert.matches('"inputs":[]', text, 1, true)
    assert.matches('"outputs":[]', text, 1, true)
  end)

  it("the validator refuses what the specification refuses", function()
    local ev = ol.event("COMPLETE", attempt())
    ev.run.runId = "R1/load/2"
    assert.is_false((valid(ev)))
    ev = ol.event("COMPLETE", attempt())
    ev.producer = nil
    assert.is_false((valid(ev)))
    ev = ol.event("COMPLETE", attempt())
    ev.outputs[1].facets.schema._schemaURL = nil
    assert.is_false((valid(ev)))
  end)

  it("carry the datasets with OpenLineage's naming, the schema and the row count", function()
    local ev = ol.event("COMPLETE", attempt())
    assert.same({ namespace = "postgres://pg:5432", name = "shop.public.orders" }, ev.inputs[1])
    local out = ev.outputs[1]
    assert.same({ "sqlite", "out/w.db#orders" }, { out.namespace, out.name })
    assert.same({ { name = "id", type = "integer" }, { name = "email", type = "text" } },
                out.facets.schema.fields)
    assert.equal(10, out.outputFacets.outputStatistics.rowCount)
    assert.same({ namespace = "weir", name = "shop.load" }, ev.job)
    assert.equal("2026-12-07T06:36:05.039Z", ev.eventTime)
    assert.same({ namespace = "weir", name = "shop" }, ev.run.facets.parent.job)
    assert.equal("boom", ol.event("FAIL", attempt({ error = "boom" })).run.facets.errorMessage.message)
  end)

  it("give an attempt one run id, another attempt another", function()
    local a = ol.event("START", attempt()).run.runId
    assert.equal(a, ol.event("COMPLETE", attempt()).run.runId)
    assert.are_not.equal(a, ol.event("START", attempt({ attempt = 3 })).run.runId)
    assert.are_not.equal(a, ol.event("START", attempt({ run_id = "R2" })).run.runId)
  end)

  it("split every kind of weir name into namespace and name", function()
    assert.same({ "redis://r:6379", "0/user:*" }, { ol.split("redis://r:6379/0/user:*") })
    assert.same({ "file", "data/in.csv" }, { ol.split("file:data/in.csv") })
    assert.same({ "postgres://h:1", "db" }, { ol.split("postgres://h:1/db") })
  end)
end)

describe("the OpenLineage exporter", function()
  local function cfg(extra)
    local c = { transport = "http", url = "http://collector:5000", endpoint = "/api/v1/lineage",
                namespace = "weir", timeout_ms = 100, retries = 2, max_queue = 3,
                flush_timeout_ms = 60000 }
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end
  local engine_stub = { P = { name = "p" }, run_id = "R" }
  local function task(n) return { name = "t", attempt = n } end

  it("POSTs each event to url + endpoint with the key, in order", function()
    local clock = fakes.clock()
    local got = {}
    local ex = ol.new(cfg({ api_key = "k3y" }), { mono = clock.mono, post = function(url, body, headers)
      got[#got + 1] = { url = url, ev = json.decode(body), headers = headers }
      return 201
    end })
    ex:started(engine_stub, task(1), 1000)
    ex:finished(engine_stub, task(1), "success", 2000, {})
    -- weir run delivers when the run is over, not between steps
    ex:tick()
    assert.equal(0, #got)
    ex:flush()
    assert.equal(2, #got)
    assert.equal("http://collector:5000/api/v1/lineage", got[1].url)
    assert.same({ "START", "COMPLETE" }, { got[1].ev.eventType, got[2].ev.eventType })
    assert.same({ "Content-Type: application/json", "Authorization: Bearer k3y" }, got[1].headers)
    assert.same({ 2, 0 }, { ex.sent, ex.dropped })
    assert.is_nil(ex:summary())
  end)

  it("bounds its queue: events past max_queue are dropped and counted", function()
    local ex = ol.new(cfg({ max_queue = 2 }), { post = function() return 200 end })
    for i = 1, 5 do ex:started(engine_stub, task(i), 1000) end
    assert.equal(2, #ex.queue)
    assert.equal(3, ex.dropped)
    assert.matches("3 dropped %(queue full%)", ex:summary())
  end)

  it("retries with backoff, then drops an event and goes on with the next", function()
    local clock = fakes.clock()
    local calls = 0
    local ex = ol.new(cfg({ retries = 2 }), { mono = clock.mono, live = true, post = function(_, body)
      calls = calls + 1
      if json.decode(body).eventType == "START" then return nil, "connection refused" end
      return 200
    end })
    ex:started(engine_stub, task(1), 1000)
    ex:finished(engine_stub, task(1), "failed", 2000, nil, "boom")
    ex:tick()
    assert.equal(1, calls)
    -- backing off: nothing is tried before the wait is over
    ex:tick()
    assert.equal(1, calls)
    clock.t = clock.t + 500
    ex:tick()
    assert.equal(2, calls)
    clock.t = clock.t + 1000
    ex:tick()
    -- the third failure was the last: START dropped, FAIL delivered
    assert.equal(3, calls)
    clock.t = clock.t + 0
    ex:tick()
    assert.equal(4, calls)
    assert.same({ 1, 1 }, { ex.sent, ex.dropped })
    assert.matches("connection refused", ex:summary())
  end)

  it("drops an event the collector refuses as it is (4xx), at once", function()
    local ex = ol.new(cfg(), { live = true, post = function() return 400 end })
    ex:started(engine_stub, task(1), 1000)
    ex:tick()
    assert.same({ 0, 1, 0 }, { ex.sent, ex.dropped, #ex.queue })
    assert.matches("HTTP 400", ex:summary())
  end)

  it("gives up at flush_timeout and counts what is left as dropped", function()
    local clock = fakes.clock()
    local ex = ol.new(cfg({ flush_timeout_ms = 1, retries = 100 }),
                      { mono = clock.mono, post = function() clock.t = clock.t + 5; return 503 end })
    for i = 1, 3 do ex:started(engine_stub, task(i), 1000) end
    ex:flush()
    assert.same({ 0, 3, 0 }, { ex.sent, ex.dropped, #ex.queue })
  end)

  it("masks secrets in what it sends", function()
    local bodies = {}
    local ex = ol.new(cfg(), { post = function(_, b) bodies[#bodies + 1] = b; return 200 end,
                               redact = function(s) return (s:gsub("hunter2", "***")) end })
    ex:finished(engine_stub, task(1), "failed", 2000, nil, "password hunter2 refused")
    ex:flush()
    assert.is_nil(bodies[1]:find("hunter2", 1, true))
    assert.matches("password *** refused", bodies[1], 1, true)
  end)

  it("takes its settings from weir.yaml, the api_key a secret like a password", function()
    local H = require("helpers")
    local dir = H.tmpdir()
    H.write(dir .. "/weir.yaml", "openlineage:\n  transport: http\n  url: http://127.0.0.1:5000/\n"
                                 .. "  api_key: plain-k3y-in-yaml\n  namespace: acme\n")
    local config = require("weir.config")
    local loaded = assert(config.load(dir .. "/weir.yaml"))
    H.cleanup(dir)
    local s = loaded.openlineage
    assert.same({ "http", "http://127.0.0.1:5000", "/api/v1/lineage", "acme", "plain-k3y-in-yaml" },
                { s.transport, s.url, s.endpoint, s.namespace, s.api_key })
    assert.equal("key ***", config.redact(loaded, "key plain-k3y-in-yaml"))
    -- the schema refuses what it does not know
    local dir2 = H.tmpdir()
    H.write(dir2 .. "/weir.yaml", "openlineage:\n  transport: file\n  path: x\n  colour: red\n")
    local bad, errs = config.load(dir2 .. "/weir.yaml")
    H.cleanup(dir2)
    assert.is_nil(bad)
    assert.matches("openlineage", table.concat(errs, "\n"))
  end)

  it("checks its weir.yaml settings", function()
    local errs = {}
    local function add(p, m) errs[#errs + 1] = p .. ": " .. m end
    assert.is_table(ol.normalize({ transport = "http", url = "http://u:pw@c:5000" }, "/p", add))
    assert.matches("openlineage.url: expected http(s)://", errs[1], 1, true)
    assert.is_nil(errs[1]:find("pw", 1, true))
    errs = {}
    local s = ol.normalize({ transport = "file", path = "ol/events.jsonl", timeout = "1s", retries = 0,
                       max_queue = 5 }, "/p", add)
    assert.same({}, errs)
    assert.same({ "/p/ol/events.jsonl", 1000, 0, 5, "weir" },
                { s.path, s.timeout_ms, s.retries, s.max_queue, s.namespace })
    ol.normalize({ transport = "kafka" }, "/p", add)
    ol.normalize({ transport = "http", url = "http://c", retries = -1 }, "/p", add)
    assert.matches("openlineage.transport: expected file or http", errs[1])
    assert.matches("openlineage.retries", errs[2])
  end)
end)

describe("weir.picture", function()
  local P = fakes.pipeline({
    extract = {}, clean = { after = { "extract" } }, enrich = { after = { "extract" } },
    load = { after = { "clean", "enrich" }, retries = 2 },
  }, "orders")

  it("draws the DAG as a tree, each task under its first dependency", function()
    assert.equal(table.concat({
      "orders: 4 tasks in 3 stages",
      "extract",
      "├── clean",
      "│   └── load  [retries 2]  (also after enrich)",
      "└── enrich",
      "" }, "\n"), picture.graph(P, "text"))
  end)

  it("writes Graphviz DOT with a cluster per stage and an edge per dependency", function()
    local dot = picture.graph(P, "dot")
    assert.matches('^digraph "orders" {', dot)
    assert.matches('subgraph cluster_3 {%s+label="stage 3";[^}]+"load";', dot)
    for _, e in ipairs({ '"extract" -> "clean";', '"extract" -> "enrich";', '"clean" -> "load";',
                         '"enrich" -> "load";' }) do
      assert.matches(e, dot, 1, true)
    end
    assert.matches("}\n$", dot)
  end)

  it("writes Mermaid with a subgraph per stage", function()
    local m = picture.graph(P, "mermaid")
    assert.matches("^flowchart LR\n", m)
    -- ids by name order: clean t1, enrich t2, extract t3, load t4
    assert.matches('t3%["extract"%]', m)
    for _, e in ipairs({ "t3 --> t1", "t3 --> t2", "t1 --> t4", "t2 --> t4" }) do
      assert.matches(e, m, 1, true)
    end
    assert.matches('subgraph b2 %["stage 2"%]', m)
  end)

  it("draws a block per template group when the pipeline includes groups", function()
    local function t(after) return { after = after or {}, retries = 0 } end
    local G = { name = "shop", tasks = { ["scd.stage"] = t(), ["scd.merge"] = t({ "scd.stage" }),
                                         publish = t({ "scd.merge" }) } }
    local dot = picture.graph(G, "dot")
    assert.matches('subgraph cluster_1 {%s+label="group scd";[^}]+"scd.merge";[^}]+"scd.stage";', dot)
    assert.is_nil(dot:find('label="stage', 1, true))
    assert.matches('"scd.merge" -> "publish";', dot, 1, true)
    assert.matches('subgraph b1 %["group scd"%]', picture.graph(G, "mermaid"))
    assert.matches("^shop: 3 tasks in 3 stages, groups scd\n", picture.graph(G, "text"))
  end)

  it("draws a run's attempts on one time scale, retries marked", function()
    local run = { id = "R", pipeline = "orders", status = "success", finished_at = 11000 }
    local text = picture.timeline(run, {
      { task = "extract", attempt = 1, status = "success", started_at = 1000, finished_at = 2000 },
      { task = "load", attempt = 1, status = "failed", started_at = 2000, finished_at = 3000 },
      { task = "load", attempt = 2, status = "success", started_at = 6000, finished_at = 11000 },
    }, 10)
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.matches("10.0s from the first attempt's start", lines[1], 1, true)
    assert.equal("TASK     TRY STATUS        START  DURATION  |          |", lines[2])
    assert.equal("extract  1   success        +0ms      1.0s  |█         |", lines[3])
    assert.equal("load     1   failed        +1.0s      1.0s  | ░        |", lines[4])
    assert.equal("load     2   success       +5.0s      5.0s  |     █████|  retry 1", lines[5])
  end)
end)
