-- weir serve on a PostgreSQL store shared by several servers: a server
-- killed with runs queued and running, two servers started at once on the
-- same store: every acknowledged run ends exactly once (one successful
-- attempt, none left running), whichever server took it.
local H = require("helpers")
local json = require("weir.json")
local PG_URL = (H.service("pg") or {}).url

local function admin()
  local cfg = assert(require("weir.store.postgres").config(PG_URL))
  cfg.name = "serve_admin"
  return require("weir.connectors.postgres").connect(cfg)
end

local function curl(method, url, key, body)
  local cmd = "curl -s -X " .. method .. " -H " .. H.q("Authorization: Bearer " .. key)
  if body then cmd = cmd .. " -H 'Content-Type: application/json' --data-binary " .. H.q(body) end
  return json.decode(H.output(cmd .. " " .. H.q(url)))
end

local function start(dir, env, name)
  return H.serve(dir, env, name, "--workers 2")
end

H.describe_with("pg", "weir serve with two servers on one PostgreSQL store", function()
  local dir, db, env, pids = nil, nil, nil, {}
  setup(function()
    dir = H.tmpdir()
    db = string.format("weir_serve_%d_%d", os.time(), math.random(1, 1e9))
    admin():run("CREATE DATABASE " .. db)
    env = { WEIR_METADATA_URL = (PG_URL:gsub("^([%a][%w+.-]*://[^/?]*)/?[^?]*", "%1/" .. db, 1)) }
    H.write(dir .. "/weir.yaml", "pipelines: [pipelines]\nserve:\n  max_active_runs: 4\n"
                                 .. "  pipeline_max_active_runs: 4\n")
    H.write(dir .. "/pipelines/work.lua", [[
      return pipeline { name = "work", params = { i = { type = "integer" } },
        tasks = { t = task { run = function(ctx)
          local t0 = os.clock()
          while os.clock() - t0 < 0.05 do end
          return ctx.params.i end } } }
    ]])
  end)
  teardown(function()
    for _, p in ipairs(pids) do os.execute("kill -9 " .. p .. " 2>/dev/null"); H.wait_dead(p) end
    require("weir.connectors.postgres").close_all()
    pcall(function() admin():run("DROP DATABASE IF EXISTS " .. db .. " WITH (FORCE)") end)
    H.cleanup(dir)
  end)

  it("ends every acknowledged run exactly once after a kill -9 and a double start", function()
    local code, out, err = H.weir(dir, "keys create ops --role operator", env)
    assert.equal(0, code, err)
    local key = out:match("(weir_%S+)")
    local pid, base = start(dir, env, "a")
    pids[#pids + 1] = pid
    local ids = {}
    for i = 1, 30 do
      local r = curl("POST", base .. "/api/v1/pipelines/work/runs", key,
                     json.encode({ params = { i = i } }))
      assert.truthy(r.run_id, json.encode(r))
      ids[i] = r.run_id
    end
    os.execute("kill -9 " .. pid)
    H.wait_dead(pid)
    -- two servers take over the same store at once
    local pb = start(dir, env, "b")
    local pc = start(dir, env, "c")
    pids[#pids + 1] = pb
    pids[#pids + 1] = pc
    local done = H.wait_for(function()
      local _, o = H.weir(dir, "runs --json --limit 100", env)
      local n = 0
      for _, r in ipairs(json.decode(o) or {}) do
        if r.status == "success" then n = n + 1 end
      end
      return n == 30
    end, 90)
    assert.truthy(done, H.read(dir .. "/b.log") .. H.read(dir .. "/c.log"))
    -- one Idempotency-Key sent to both servers at once: never two runs
    local base_b = H.read(dir .. "/b.log"):match("listening on (127%.0%.0%.1:%d+)")
    local base_c = H.read(dir .. "/c.log"):match("listening on (127%.0%.0%.1:%d+)")
    assert.truthy(base_b and base_c)
    for k = 1, 10 do
      local outs = {}
      for j, b in ipairs({ base_b, base_c }) do
        outs[j] = dir .. "/idem" .. k .. "_" .. j
        os.execute("curl -s -o " .. H.q(outs[j]) .. " -w '%{http_code}' -X POST -H "
                   .. H.q("Authorization: Bearer " .. key) .. " -H 'Idempotency-Key: same-" .. k
                   .. "' -H 'Content-Type: application/json' --data-binary '{\"params\":{\"i\":"
                   .. k .. "}}' http://" .. b .. "/api/v1/pipelines/work/runs > "
                   .. H.q(outs[j] .. ".code") .. " &")
      end
      assert.truthy(H.wait_for(function()
        return H.read(outs[1] .. ".code") and H.read(outs[2] .. ".code")
               and #H.read(outs[1] .. ".code") == 3 and #H.read(outs[2] .. ".code") == 3
      end, 20))
      local seen = {}
      for j = 1, 2 do
        local st = tonumber(H.read(outs[j] .. ".code"))
        assert.truthy(st == 200 or st == 201 or st == 409, tostring(st))
        local body = json.decode(H.read(outs[j]))
        if st ~= 409 then seen[body.run_id] = true end
      end
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      assert.equal(1, n, "one key, " .. n .. " runs")
    end
    -- a schedule seen by both servers: each logical time fires once.
    -- Its state says it began 5 minutes ago (catch-up all): both servers
    -- find the same missed minutes at once after a reload.
    H.write(dir .. "/pipelines/tick.lua", [[
      return pipeline { name = "tick",
        schedule = { cron = "* * * * *", catchup = "all" },
        tasks = { t = task { run = function(ctx) return ctx.run.logical_time end } } }
    ]])
    os.execute("kill -HUP " .. pb .. " " .. pc)
    local cfg = assert(require("weir.store.postgres").config(env.WEIR_METADATA_URL))
    cfg.name = "serve_pg_check"
    local pg = require("weir.connectors.postgres").connect(cfg)
    local function count(q) return tonumber(pg:all(q)[1].n) end
    assert.truthy(H.wait_for(function()
      return count("SELECT count(*) AS n FROM weir.schedules s JOIN weir.pipelines p "
                   .. "ON p.id = s.pipeline_id WHERE p.name = 'tick'") == 1
    end, 20))
    local minute = math.floor(os.time() / 60) * 60000
    pg:exec("UPDATE weir.schedules SET since = $1, last_fire = NULL FROM weir.pipelines p "
            .. "WHERE p.id = schedules.pipeline_id AND p.name = 'tick'", { minute - 5 * 60000 - 1 })
    pg:run("DELETE FROM weir.fires")
    pg:run("DELETE FROM weir.runs WHERE logical_time IS NOT NULL")
    os.execute("kill -HUP " .. pb .. " " .. pc)
    assert.truthy(H.wait_for(function()
      return count("SELECT count(*) AS n FROM weir.runs WHERE logical_time IS NOT NULL "
                   .. "AND status = 'success'") >= 6
    end, 60), H.read(dir .. "/b.log") .. H.read(dir .. "/c.log"))
    os.execute("sleep 2")
    assert.equal(0, count("SELECT count(*) AS n FROM (SELECT logical_time FROM weir.runs "
                          .. "WHERE logical_time IS NOT NULL GROUP BY logical_time "
                          .. "HAVING count(*) > 1) d"))
    assert.equal(count("SELECT count(*) AS n FROM weir.fires"),
                 count("SELECT count(*) AS n FROM weir.runs WHERE logical_time IS NOT NULL"))
    for i, id in ipairs(ids) do
      local c2, o2 = H.weir(dir, "show " .. id .. " --json", env)
      assert.equal(0, c2)
      local r = json.decode(o2)
      local t = H.task(r, "t")
      assert.equal(i, t.output)
      local ok_attempts = 0
      for _, a in ipairs(t.attempt_list) do
        if a.status == "success" then ok_attempts = ok_attempts + 1 end
        assert.is_true(a.status ~= "running", id)
      end
      assert.equal(1, ok_attempts, id)
    end
  end)
end)
