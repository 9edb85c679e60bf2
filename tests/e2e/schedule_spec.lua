-- Schedules under weir serve, end to end: a server that was down for
-- five minutes catches up a minutely schedule (catchup = "all") with one
-- run per missed minute, each with its logical time in ctx.run; a
-- restart fires none of them again; pause stops firing. (The choice of
-- logical times, daylight saving included, is tests/lua/unit/
-- scheduler_spec.lua, with a virtual clock.)
local H = require("helpers")
local json = require("weir.json")

local function sql(dir, q)
  return H.output("sqlite3 " .. H.q(dir .. "/.weir/weir.db") .. " " .. H.q(q) .. " 2>&1")
end

local function curl(method, url, key)
  return json.decode(H.output("curl -s -X " .. method .. " -H "
                              .. H.q("Authorization: Bearer " .. key) .. " " .. H.q(url)))
end

describe("schedules under weir serve", function()
  local dir, pid, key
  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/weir.yaml", "pipelines: [pipelines]\n")
    H.write(dir .. "/pipelines/tick.lua", [[
      return pipeline { name = "tick",
        schedule = { cron = "* * * * *", timezone = "Europe/Berlin", catchup = "all" },
        params = { day = { type = "string", default = "${logical_date}" } },
        tasks = { t = task { run = function(ctx) return ctx.run.logical_time end } } }
    ]])
    local code, out = H.weir(dir, "keys create ops --role operator")
    assert.equal(0, code)
    key = out:match("(weir_%S+)")
  end)
  teardown(function()
    if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null"); H.wait_dead(pid) end
    H.cleanup(dir)
  end)

  local function fired()
    local out = sql(dir, "SELECT count(*) FROM fires")
    return tonumber(out:match("%d+"))
  end

  it("catches up the minutes it missed, each once, with its logical time", function()
    pid = H.serve(dir)
    -- the schedule is known from now on; pretend it was five minutes ago
    -- and the server was down since
    assert.truthy(H.wait_for(function() return sql(dir, "SELECT count(*) FROM schedules") == "1\n" end, 10))
    os.execute("kill -TERM " .. pid)
    H.wait_dead(pid, 30)
    local before = fired()
    local now_ms = os.time() * 1000
    local minute = math.floor(now_ms / 60000) * 60000
    sql(dir, "UPDATE schedules SET since = " .. (minute - 5 * 60000 - 1) .. ", last_fire = NULL")
    sql(dir, "DELETE FROM fires")
    local base
    pid, base = H.serve(dir)
    -- 6 due minutes (minute - 5 .. minute) unless the clock turned a
    -- minute meanwhile: then 7
    local runs = H.wait_for(function()
      local r = curl("GET", base .. "/api/v1/runs?pipeline=tick&limit=100", key)
      local done = {}
      for _, x in ipairs(r.runs or {}) do
        if x.status == "success" and x.logical_time then done[#done + 1] = x end
      end
      return #done >= 6 and done
    end, 60)
    assert.truthy(runs, "the missed minutes did not run: " .. tostring(H.read(dir .. "/serve.log")))
    local seen = {}
    for _, x in ipairs(runs) do
      assert.is_nil(seen[x.logical_time], "fired twice: " .. x.logical_time)
      seen[x.logical_time] = true
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:00Z$", x.logical_time)
      local full = curl("GET", base .. "/api/v1/runs/" .. x.run_id, key)
      assert.equal(x.logical_time, full.tasks[1].output) -- ctx.run.logical_time
      -- a default naming the logical date: the day in Berlin
      local tz = require("weir.tz")
      local y, m, d = tz.to_local(tz.load("Europe/Berlin"),
                                  require("weir.scheduler").parse_time(x.logical_time) / 1000)
      assert.equal(string.format("%04d-%02d-%02d", y, m, d), x.params.day)
    end
    assert.truthy(seen[require("weir.scheduler").iso(minute - 5 * 60000)])
    -- a restart fires none of them again
    assert.is_true(fired() >= 6 and before >= 0)
    os.execute("kill -9 " .. pid)
    H.wait_dead(pid)
    pid, base = H.serve(dir)
    os.execute("sleep 2")
    local dup = sql(dir, "SELECT count(*) FROM runs GROUP BY logical_time HAVING count(*) > 1")
    assert.equal("", dup)
    -- a backfill of the two hours before: one run per minute, never one
    -- already run (the minutes caught up above are skipped)
    local from = require("weir.scheduler").iso(minute - 120 * 60000)
    local to = require("weir.scheduler").iso(minute)
    local env = { WEIR_SERVER = base, WEIR_TOKEN = key }
    local code, out, err = H.weir(dir, "backfill tick --from " .. from .. " --to " .. to
                                       .. " --dry-run", env)
    assert.equal(0, code, err)
    assert.matches("tick: 121 logical times", out)
    code, out, err = H.weir(dir, "backfill tick --from " .. from .. " --to " .. to, env)
    assert.equal(0, code, err)
    local created, skipped = out:match("(%d+) runs queued, (%d+) logical times already run")
    assert.equal(121, tonumber(created) + tonumber(skipped))
    assert.is_true(tonumber(skipped) >= 6)
    code, out = H.weir(dir, "backfill tick --from " .. from .. " --to " .. to, env)
    assert.equal(0, code)
    assert.matches("0 runs queued, 121 logical times already run", out)
    assert.truthy(H.wait_for(function()
      return sql(dir, "SELECT count(*) FROM runs WHERE status <> 'success'") == "0\n"
    end, 60), "the backfill did not finish")
    assert.equal("", sql(dir, "SELECT logical_time FROM runs GROUP BY logical_time "
                              .. "HAVING count(*) > 1"))
    -- paused: the next minutes do not fire
    local p = curl("POST", base .. "/api/v1/pipelines/tick/schedule/pause", key)
    assert.is_true(p.paused)
    local s = curl("GET", base .. "/api/v1/schedules", key)
    assert.equal("tick", s.schedules[1].pipeline)
    assert.is_true(s.schedules[1].paused)
    assert.equal(5, #s.schedules[1].next)
    assert.matches("CES?T$", s.schedules[1].next[1]["local"])
  end)
end)

-- A server killed between fires recorded (their runs queued) and those
-- runs done, during a catch-up and during a backfill: the next start runs
-- each logical time once, none lost, none twice.
describe("schedules across a kill -9 between a fire and its run", function()
  local dir, pid, key
  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/weir.yaml", "pipelines: [pipelines]\n")
    H.write(dir .. "/pipelines/slow.lua", [[
      return pipeline { name = "slow", max_active_runs = 1,
        schedule = { cron = "* * * * *", catchup = "all" },
        tasks = { t = task { run = function(ctx)
          local t0 = os.clock()
          while os.clock() - t0 < 0.3 do end
          return ctx.run.logical_time
        end } } }
    ]])
    local code, out = H.weir(dir, "keys create ops --role operator")
    assert.equal(0, code)
    key = out:match("(weir_%S+)")
  end)
  teardown(function()
    if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null"); H.wait_dead(pid) end
    H.cleanup(dir)
  end)

  local function count(q) return tonumber(sql(dir, q):match("%d+")) end

  it("runs every recorded fire once after the restart", function()
    pid = H.serve(dir)
    assert.truthy(H.wait_for(function() return count("SELECT count(*) FROM schedules") == 1 end, 10))
    os.execute("kill -TERM " .. pid)
    H.wait_dead(pid, 30)
    local minute = math.floor(os.time() / 60) * 60000
    sql(dir, "UPDATE schedules SET since = " .. (minute - 8 * 60000 - 1) .. ", last_fire = NULL")
    sql(dir, "DELETE FROM fires; DELETE FROM runs")
    local base
    pid, base = H.serve(dir)
    -- a backfill of the hour before, queued behind the catch-up
    local env = { WEIR_SERVER = base, WEIR_TOKEN = key }
    local code, _, err = H.weir(dir, "backfill slow --from "
                                  .. require("weir.scheduler").iso(minute - 40 * 60000)
                                  .. " --to " .. require("weir.scheduler").iso(minute - 10 * 60000), env)
    assert.equal(0, code, err)
    -- some done, most still queued: kill it there
    assert.truthy(H.wait_for(function()
      return count("SELECT count(*) FROM runs WHERE status = 'success'") >= 2
    end, 60))
    os.execute("kill -9 " .. pid)
    H.wait_dead(pid)
    local fires = count("SELECT count(*) FROM fires")
    assert.is_true(fires >= 9 + 31, "fires recorded: " .. fires)
    assert.is_true(count("SELECT count(*) FROM runs WHERE status = 'queued'") > 0)
    pid = H.serve(dir)
    assert.truthy(H.wait_for(function()
      return count("SELECT count(*) FROM runs WHERE status <> 'success'") == 0
    end, 120), H.read(dir .. "/serve.log"))
    -- one run per fire (a minute may have turned since: one more), one
    -- run per logical time
    assert.is_true(count("SELECT count(*) FROM runs") >= fires)
    assert.equal(count("SELECT count(*) FROM fires"), count("SELECT count(*) FROM runs"))
    assert.equal("", sql(dir, "SELECT logical_time FROM runs GROUP BY logical_time HAVING count(*) > 1"))
    assert.equal(0, count("SELECT count(*) FROM fires f LEFT JOIN runs r ON r.id = f.run_id "
                          .. "WHERE r.id IS NULL"))
  end)
end)
