-- Lineage through the real binary, with files and SQLite: what `weir run`
-- records with no code in the pipeline, `weir lineage` (tree, --run,
-- --json), the OpenLineage export to a JSON Lines file and to a real HTTP
-- listener (OpenLineage's HTTP transport), an export that cannot deliver
-- (the run is not failed, the drops are counted and shown), `weir graph`
-- and `weir show --timeline`.
local H = require("helpers")
local json = require("weir.json")

local LOAD = [[
return pipeline {
  name = "people",
  tasks = {
    load = task { run = function(ctx)
      return ctx.csv("data/in.csv"):into(ctx.sqlite("out/w.db"), "People")
    end },
    export = task { after = { "load" }, retries = 1, retry_delay = "10ms", run = function(ctx)
      if ctx.attempt == 1 then ctx.fail("flaky") end
      return ctx.sqlite("out/w.db")
        :query("SELECT p.id, p.name FROM people p WHERE p.id > ?", { 1 })
        :to_jsonl("out/people.jsonl")
    end },
  },
}
]]

local REPORT = [[
return pipeline {
  name = "report",
  tasks = {
    count = task { run = function(ctx)
      local n = 0
      ctx.jsonl("out/people.jsonl"):each(function() n = n + 1 end)
      return ctx.rows({ { n = n } }):to_csv("out/count.csv")
    end },
  },
}
]]

local function setup(yaml)
  local dir = H.tmpdir()
  H.write(dir .. "/data/in.csv", "id,name\n1,ann\n2,bob\n3,cy\n")
  H.write(dir .. "/load.lua", LOAD)
  H.write(dir .. "/report.lua", REPORT)
  if yaml then H.write(dir .. "/weir.yaml", yaml) end
  return dir
end

local function lines_of(text)
  local out = {}
  for l in (text or ""):gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

describe("lineage recorded by weir run", function()
  local dir
  after_each(function() H.cleanup(dir) end)

  it("names every source and sink, with rows and the sink's columns, per attempt", function()
    dir = setup()
    local code, _, err = H.weir(dir, "run load.lua")
    assert.equal(0, code, err)
    local run_id = H.last_run(dir)
    local c2, out = H.weir(dir, "lineage --run " .. run_id .. " --json")
    assert.equal(0, c2)
    local r = json.decode(out)
    assert.equal("people", r.pipeline)
    local got = {}
    for _, d in ipairs(r.datasets) do
      got[#got + 1] = table.concat({ d.task, d.attempt, d.status, d.role, d.dataset, d.rows }, " ")
    end
    assert.same({
      "load 1 success input file:data/in.csv 3",
      "load 1 success output sqlite:out/w.db#people 3",
      "export 2 success input sqlite:out/w.db#people 2",
      "export 2 success output file:out/people.jsonl 2",
    }, got)
    assert.same({ { name = "id", type = "text" }, { name = "name", type = "text" } },
                r.datasets[2].columns)
    assert.same({ { name = "id", type = "string" }, { name = "name", type = "string" } },
                r.datasets[4].columns)
    -- the text form
    local _, text = H.weir(dir, "lineage --run " .. run_id)
    assert.matches("load (attempt 1, success)", text, 1, true)
    assert.matches("wrote  sqlite:out/w.db#people  3 rows  (id text, name text)", text, 1, true)
  end)

  it("draws who writes and reads a dataset, upstream and downstream, across pipelines", function()
    dir = setup()
    assert.equal(0, (H.weir(dir, "run load.lua")))
    assert.equal(0, (H.weir(dir, "run report.lua")))
    -- written as the user likes: ./, a table's case
    local code, out = H.weir(dir, "lineage 'sqlite:./out/w.db#PEOPLE'")
    assert.equal(0, code)
    assert.equal(table.concat({
      "sqlite:out/w.db#people",
      "upstream:",
      "  └─ written by people.load",
      "     └─ reads file:data/in.csv",
      "downstream:",
      "  └─ read by people.export",
      "     └─ writes file:out/people.jsonl",
      "        └─ read by report.count",
      "           └─ writes file:out/count.csv",
    }, "\n") .. "\n", out)
    local _, js = H.weir(dir, "lineage file:out/count.csv --json")
    local t = json.decode(js)
    assert.equal("file:out/count.csv", t.dataset)
    assert.same({}, t.downstream)
    assert.same({ "report", "count" }, { t.upstream[1].pipeline, t.upstream[1].task })
    local up = t.upstream[1].datasets[1]
    assert.equal("file:out/people.jsonl", up.dataset)
    assert.equal("people", up.upstream[1].pipeline)
    -- an absolute path inside the project is the same dataset
    local _, abs = H.weir(dir, "lineage " .. H.q("file:" .. dir .. "/out/count.csv") .. " --json")
    assert.same(t, json.decode(abs))
    -- nothing known, a bad name
    local c3, _, e3 = H.weir(dir, "lineage file:nowhere.csv")
    assert.equal(1, c3)
    assert.matches("no recorded run read or wrote file:nowhere.csv", e3, 1, true)
    local c4, _, e4 = H.weir(dir, "lineage ftp://x")
    assert.equal(2, c4)
    assert.matches("bad dataset", e4, 1, true)
  end)
end)

describe("the OpenLineage export", function()
  local dir
  after_each(function() H.cleanup(dir) end)

  it("appends START and COMPLETE/FAIL events to a JSON Lines file", function()
    dir = setup("openlineage:\n  transport: file\n  path: ol/events.jsonl\n  namespace: acme\n")
    os.execute("mkdir -p " .. H.q(dir .. "/ol"))
    local code, _, err = H.weir(dir, "run load.lua")
    assert.equal(0, code, err)
    local evs = {}
    for _, l in ipairs(lines_of(H.read(dir .. "/ol/events.jsonl"))) do evs[#evs + 1] = json.decode(l) end
    local kinds = {}
    for i, e in ipairs(evs) do kinds[i] = e.job.name .. " " .. e.eventType end
    assert.same({ "people.load START", "people.load COMPLETE", "people.export START",
                  "people.export FAIL", "people.export START", "people.export COMPLETE" }, kinds)
    assert.equal("acme", evs[1].job.namespace)
    assert.equal(evs[1].run.runId, evs[2].run.runId)
    assert.are_not.equal(evs[4].run.runId, evs[6].run.runId)
    assert.equal("flaky", evs[4].run.facets.errorMessage.message:match("flaky"))
    assert.same({ { namespace = "file", name = "data/in.csv" } }, evs[2].inputs)
    local out = evs[2].outputs[1]
    assert.same({ "sqlite", "out/w.db#people", 3 },
                { out.namespace, out.name, out.outputFacets.outputStatistics.rowCount })
    assert.same({ { name = "id", type = "text" }, { name = "name", type = "text" } },
                out.facets.schema.fields)
  end)

  it("POSTs every event to a collector's /api/v1/lineage (HTTP transport)", function()
    local http = require("weir.http")
    local srv = assert(http.new({ address = "127.0.0.1", port = 0 }))
    dir = setup(string.format("openlineage:\n  transport: http\n  url: http://127.0.0.1:%d\n"
                              .. "  api_key: ${env:OL_KEY}\n", srv:port()))
    -- in the background (its output to a file, so spawn returns at once)
    -- while this process answers as the collector
    local pid = H.spawn(dir, "run load.lua", dir .. "/run.log", { OL_KEY = "k3y-s3cret" })
    local got = {}
    local deadline = os.time() + 60
    while os.time() < deadline do
      if srv:wait(50) then
        local req = srv:next()
        if req then
          got[#got + 1] = req
          srv:respond(req.id, 201, { ["Content-Type"] = "application/json" }, "{}")
        end
      elseif H.wait_dead(pid, 0) then
        break
      end
    end
    srv:close()
    local log = H.read(dir .. "/run.log")
    assert.equal("success", H.show(dir, H.last_run(dir)).status, log)
    assert.is_nil(log:find("openlineage:", 1, true), log)
    assert.equal(6, #got, H.read(dir .. "/run.log"))
    for _, req in ipairs(got) do
      assert.equal("POST", req.method)
      assert.equal("/api/v1/lineage", req.path)
      assert.equal("application/json", req.headers["content-type"])
      assert.equal("Bearer k3y-s3cret", req.headers["authorization"])
      local ev = json.decode(req.body)
      assert.truthy(ev.eventType and ev.run.runId and ev.job.name and ev.schemaURL)
    end
    assert.equal("COMPLETE", json.decode(got[6].body).eventType)
    -- the key reaches the collector and nothing else
    assert.is_nil(H.read(dir .. "/run.log"):find("k3y", 1, true))
  end)

  it("never fails or holds a run when the collector is down; drops are counted and shown", function()
    -- a port nobody listens on: connections are refused
    local http = require("weir.http")
    local srv = assert(http.new({ address = "127.0.0.1", port = 0 }))
    local port = srv:port()
    srv:close()
    dir = setup(string.format("openlineage:\n  transport: http\n  url: http://127.0.0.1:%d\n"
                              .. "  retries: 1\n  flush_timeout: 1s\n", port))
    local code, _, err = H.weir(dir, "run load.lua")
    assert.equal(0, code, err)
    assert.matches("openlineage: 0 event%(s%) sent to http://127.0.0.1:%d+/api/v1/lineage, 6 dropped",
                   err)
    local c2, out = H.weir(dir, "health --json")
    assert.equal(0, c2, out)
    local h = json.decode(out)
    assert.equal(1, #h.openlineage)
    assert.same({ 0, 6 }, { h.openlineage[1].sent, h.openlineage[1].dropped })
    local _, text = H.weir(dir, "health")
    assert.matches("openlineage: 0 sent, 6 dropped", text, 1, true)
  end)
end)

describe("lineage under weir serve", function()
  local dir, pid
  after_each(function()
    if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null"); H.wait_dead(pid) end
    pid = nil
    H.cleanup(dir)
  end)

  it("records a triggered run's datasets and exports its events as it goes", function()
    dir = setup("pipelines: [.]\nopenlineage:\n  transport: file\n  path: events.jsonl\n")
    local code, out, err = H.weir(dir, "keys create ops --role operator")
    assert.equal(0, code, err)
    local key = out:match("(weir_%S+)")
    local base
    pid, base = H.serve(dir)
    local status = H.output("curl -s -o /dev/null -w '%{http_code}' -X POST -H "
                            .. H.q("Authorization: Bearer " .. key)
                            .. " -H 'Content-Type: application/json' --data-binary '{}' "
                            .. H.q(base .. "/api/v1/pipelines/people/runs?wait=30s"))
    assert.equal("200", status) -- the run, waited for, is over
    -- the events are in the file while the server runs
    local events = H.wait_for(function()
      local t = H.read(dir .. "/events.jsonl") or ""
      local n = select(2, t:gsub("\n", ""))
      return n >= 6 and t
    end, 20)
    assert.truthy(events, H.read(dir .. "/events.jsonl"))
    assert.matches('"eventType":"COMPLETE"', events, 1, true)
    local c2, tree = H.weir(dir, "lineage file:out/people.jsonl")
    assert.equal(0, c2)
    assert.matches("written by people.export", tree, 1, true)
    os.execute("kill -TERM " .. pid)
    assert.truthy(H.wait_dead(pid, 30))
    pid = nil
    local _, health = H.weir(dir, "health --json")
    local h = json.decode(health)
    assert.same({ 6, 0 }, { h.openlineage[1].sent, h.openlineage[1].dropped })
  end)
end)

describe("pictures", function()
  local dir
  after_each(function() H.cleanup(dir) end)

  it("weir graph draws a pipeline as a tree, DOT and Mermaid", function()
    dir = setup()
    local code, out = H.weir(dir, "graph load.lua")
    assert.equal(0, code)
    assert.equal("people: 2 tasks in 2 stages\nload\n└── export  [retries 1]\n", out)
    local _, dot = H.weir(dir, "graph load.lua --format dot")
    assert.matches('"load" -> "export";', dot, 1, true)
    local _, mm = H.weir(dir, "graph load.lua --format=mermaid")
    assert.matches("flowchart LR", mm, 1, true)
    local c2, _, e2 = H.weir(dir, "graph load.lua --format png")
    assert.equal(2, c2)
    assert.matches("--format must be text, dot, mermaid, svg", e2, 1, true)
  end)

  it("weir graph --format svg says clearly when Graphviz is not installed", function()
    dir = setup()
    -- a PATH without dot
    local code, out, err = H.weir(dir, "graph load.lua --format svg", { PATH = "/nonexistent" })
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("needs Graphviz's dot, which is not installed", err, 1, true)
    assert.matches("--format dot", err, 1, true)
  end)

  it("weir show --timeline draws the attempts, the retry marked", function()
    dir = setup()
    assert.equal(0, (H.weir(dir, "run load.lua")))
    local code, out = H.weir(dir, "show " .. H.last_run(dir) .. " --timeline")
    assert.equal(0, code)
    local l = lines_of(out)
    assert.matches("^run %S+ of people: success", l[1])
    assert.matches("^TASK ", l[2])
    assert.matches("^load +1 +success ", l[3])
    assert.matches("^export +1 +failed .*|$", l[4])
    assert.matches("^export +2 +success .*|  retry 1$", l[5])
  end)
end)
