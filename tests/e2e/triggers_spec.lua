-- Triggers under weir serve, end to end: a pipeline that follows another
-- runs once per success of it (and not again after a restart); a file
-- written slowly into a watched folder starts exactly one run, once it is
-- complete, and a file renamed into place another; a backfill with
-- --max-active never has more runs active than it allows; weir show says
-- what started each run; weir validate refuses bad trigger settings.
local H = require("helpers")
local json = require("weir.json")

local function sql(dir, q)
  return H.output("sqlite3 " .. H.q(dir .. "/.weir/weir.db") .. " " .. H.q(q) .. " 2>&1")
end

local function curl(method, url, key, body)
  return json.decode(H.output("curl -s -X " .. method .. " -H "
                              .. H.q("Authorization: Bearer " .. key)
                              .. (body and (" -H 'Content-Type: application/json' -d "
                                            .. H.q(body)) or "") .. " " .. H.q(url)))
end

local function runs_of(base, key, name)
  local r = curl("GET", base .. "/api/v1/runs?pipeline=" .. name .. "&limit=100", key)
  return r.runs or {}
end

local function succeeded(list)
  local n = 0
  for _, x in ipairs(list) do if x.status == "success" then n = n + 1 end end
  return n
end

-- the runs of pipeline name once n of them succeeded (nil after 30 s)
local function await_success(base, key, name, n)
  return H.wait_for(function()
    local l = runs_of(base, key, name)
    return succeeded(l) == n and l
  end, 30)
end

describe("triggers under weir serve", function()
  local dir, pid, key, base
  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/weir.yaml", "pipelines: [pipelines]\n")
    H.write(dir .. "/pipelines/up.lua", [[
      return pipeline { name = "up", tasks = { t = task { run = function() return 1 end } } }
    ]])
    H.write(dir .. "/pipelines/down.lua", [[
      return pipeline { name = "down", triggers = { after = { "up" } },
        tasks = { t = task { run = function() return 2 end } } }
    ]])
    H.write(dir .. "/pipelines/writer.lua", [[
      return pipeline { name = "writer", tasks = { w = task { run = function(ctx)
        return ctx.rows({ { id = 1 }, { id = 2 } }):to_csv("out/data.csv").rows
      end } } }
    ]])
    H.write(dir .. "/pipelines/reader.lua", [[
      return pipeline { name = "reader",
        triggers = { datasets = { "file:./pipelines/out/data.csv" } },
        tasks = { r = task { run = function(ctx) return ctx.csv("out/data.csv"):count() end } } }
    ]])
    H.write(dir .. "/pipelines/ingest.lua", [[
      return pipeline { name = "ingest",
        params = { path = { type = "string" } },
        triggers = { files = { dir = "inbox", pattern = "*.csv", settle = "3s" } },
        tasks = { load = task { run = function(ctx)
          return ctx.csv(ctx.params.path):count()
        end } } }
    ]])
    H.write(dir .. "/pipelines/hourly.lua", [[
      return pipeline { name = "hourly", schedule = "0 * * * *",
        tasks = { t = task { run = function()
          local t0 = os.clock()
          while os.clock() - t0 < 0.2 do end
          return 1
        end } } }
    ]])
    assert.truthy(H.succeeds("mkdir -p " .. H.q(dir .. "/pipelines/inbox")))
    local code, out = H.weir(dir, "keys create ops --role operator")
    assert.equal(0, code)
    key = out:match("(weir_%S+)")
    pid, base = H.serve(dir, nil, nil, "--workers 4")
  end)
  teardown(function()
    if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null"); H.wait_dead(pid) end
    H.cleanup(dir)
  end)

  it("runs a pipeline once after each success of the one it follows", function()
    assert.equal(0, #runs_of(base, key, "down"))
    local r = curl("POST", base .. "/api/v1/pipelines/up/runs?wait=30s", key, "{}")
    assert.equal("success", r.status)
    local down = await_success(base, key, "down", 1)
    assert.truthy(down, H.read(dir .. "/serve.log"))
    assert.equal("after up (run " .. r.run_id .. ")", down[1].trigger)
    local code, out = H.weir(dir, "show " .. down[1].run_id)
    assert.equal(0, code)
    assert.matches("trigger: after up %(run " .. r.run_id:gsub("%-", "%%-") .. "%)", out)
    -- nothing new upstream: no second run, also not after a restart
    os.execute("kill -9 " .. pid)
    H.wait_dead(pid)
    pid, base = H.serve(dir, nil, nil, "--workers 4")
    os.execute("sleep 2")
    assert.equal(1, #runs_of(base, key, "down"))
    -- a new success upstream: one more
    curl("POST", base .. "/api/v1/pipelines/up/runs?wait=30s", key, "{}")
    assert.truthy(await_success(base, key, "down", 2))
    os.execute("sleep 2")
    assert.equal(2, #runs_of(base, key, "down"))
    assert.equal("2\n", sql(dir, "SELECT count(*) FROM trigger_fires WHERE kind = 'after'"))
  end)

  it("runs a pipeline once after another wrote a dataset it reads", function()
    assert.equal(0, #runs_of(base, key, "reader"))
    local r = curl("POST", base .. "/api/v1/pipelines/writer/runs?wait=30s", key, "{}")
    assert.equal("success", r.status)
    local list = await_success(base, key, "reader", 1)
    assert.truthy(list, H.read(dir .. "/serve.log"))
    assert.equal("dataset file:pipelines/out/data.csv written by writer (run " .. r.run_id .. ")",
                 list[1].trigger)
    local full = curl("GET", base .. "/api/v1/runs/" .. list[1].run_id, key)
    assert.equal(2, full.tasks[1].output)
    -- the reader's own read is no write; nothing more happens
    os.execute("sleep 2")
    assert.equal(1, #runs_of(base, key, "reader"))
    curl("POST", base .. "/api/v1/pipelines/writer/runs?wait=30s", key, "{}")
    assert.truthy(await_success(base, key, "reader", 2))
  end)

  it("starts one run per complete new file, never for a half-written one", function()
    local inbox = dir .. "/pipelines/inbox/"
    -- written slowly: 1,000 rows over about two seconds
    local f = assert(io.open(inbox .. "slow.csv", "w"))
    f:write("id,name\n")
    for i = 1, 1000 do
      f:write(i, ",row", i, "\n")
      if i % 100 == 0 then f:flush(); os.execute("sleep 0.2") end
    end
    f:close()
    -- renamed into place (written elsewhere long enough ago)
    H.write(dir .. "/ready.csv", "id\n1\n2\n3\n")
    assert.truthy(H.succeeds("touch -d '1 minute ago' " .. H.q(dir .. "/ready.csv")
                             .. " && mv " .. H.q(dir .. "/ready.csv") .. " " .. H.q(inbox)))
    -- not matching the pattern, and a writer's hidden temporary file
    H.write(inbox .. "notes.txt", "x\n")
    H.write(inbox .. ".partial.csv", "id\n")
    local list = H.wait_for(function()
      local l = runs_of(base, key, "ingest")
      return succeeded(l) == 2 and l
    end, 60)
    assert.truthy(list, H.read(dir .. "/serve.log"))
    local rows = {}
    for _, x in ipairs(list) do
      local full = curl("GET", base .. "/api/v1/runs/" .. x.run_id, key)
      rows[x.params.path] = full.tasks[1].output
      assert.equal("file " .. x.params.path, x.trigger)
    end
    assert.same({ ["inbox/slow.csv"] = 1000, ["inbox/ready.csv"] = 3 }, rows)
    -- once: not again after a restart, while the files are still there
    os.execute("kill -9 " .. pid)
    H.wait_dead(pid)
    pid, base = H.serve(dir, nil, nil, "--workers 4")
    os.execute("sleep 3")
    assert.equal(2, #runs_of(base, key, "ingest"))
    -- a file that changed afterwards is a new arrival
    H.write(inbox .. "ready.csv", "id\n1\n2\n3\n4\n")
    assert.truthy(await_success(base, key, "ingest", 3))
  end)

  it("keeps a backfill within --max-active", function()
    local env = { WEIR_SERVER = base, WEIR_TOKEN = key }
    local code, out, err = H.weir(dir, "backfill hourly --from 2026-01-01T00:00:00Z "
                                       .. "--to 2026-01-01T07:00:00Z --max-active 2", env)
    assert.equal(0, code, err)
    assert.matches("8 runs queued", out)
    assert.truthy(H.wait_for(function() return succeeded(runs_of(base, key, "hourly")) == 8 end, 60),
                  H.read(dir .. "/serve.log"))
    -- the most runs active at one time, from their recorded intervals
    -- (4 workers: without the limit up to 4 would overlap)
    local most = tonumber(sql(dir, [[
      SELECT max(n) FROM (SELECT (SELECT count(*) FROM runs b JOIN pipelines q ON q.id = b.pipeline_id
        WHERE q.name = 'hourly' AND b.started_at <= a.started_at AND b.finished_at > a.started_at) AS n
        FROM runs a JOIN pipelines p ON p.id = a.pipeline_id WHERE p.name = 'hourly')]]):match("%d+"))
    assert.truthy(most >= 1 and most <= 2, "runs active at once: " .. tostring(most))
    code, out = H.weir(dir, "show " .. runs_of(base, key, "hourly")[1].run_id)
    assert.equal(0, code)
    assert.matches("trigger: backfill by key:ops, logical time 2026%-01%-01T0%d:00:00Z", out)
    code, out, err = H.weir(dir, "backfill hourly --from 2026-01-01 --to 2026-01-02 --max-active 0",
                            env)
    assert.equal(2, code)
    assert.matches("max%-active", out .. err)
    local bad = curl("POST", base .. "/api/v1/pipelines/hourly/backfill", key,
                     '{"from":"2026-01-01","to":"2026-01-02","max_active":0}')
    assert.equal(422, bad.status)
    assert.equal("/max_active", bad.errors[1].pointer)
  end)

  it("refuses bad trigger settings at weir validate, with their paths", function()
    H.write(dir .. "/bad.lua", [[
      return pipeline { name = "bad", params = { n = { type = "integer" } },
        triggers = { after = { "bad" }, files = { dir = "../elsewhere", pattern = "[ab", param = "n" },
                     datasets = { "ftp://host/x" } },
        tasks = { t = task { run = function() end } } }
    ]])
    local code, out, err = H.weir(dir, "validate bad.lua")
    assert.equal(1, code)
    local text = out .. err
    assert.matches("triggers%.after%[1%]: a pipeline cannot follow itself", text)
    assert.matches("triggers%.files%.dir: must stay under the pipeline's folder", text)
    assert.matches("triggers%.files%.pattern: unclosed %[", text)
    assert.matches("triggers%.files%.param: param \"n\" receives a path: its type must be string", text)
    assert.matches("triggers%.datasets%[1%]: bad dataset ftp://host/x", text)
  end)
end)
