-- weir resume decides whether a run's supervisor is alive by its process
-- identity (boot and start time), not by its pid alone: a pid reused by
-- another process must not block the run forever.
local H = require("helpers")

local function sql(dir, q)
  local p = io.popen("sqlite3 " .. H.q(dir .. "/.weir/weir.db") .. " " .. H.q(q) .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

describe("weir resume and the recorded supervisor", function()
  local dir, run_id, other
  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/p.lua", [[
      return pipeline { name = "r", tasks = {
        -- the first attempt runs until its supervisor is killed; the
        -- attempts of the resumes return at once
        slow = task { run = function(ctx)
          if ctx.attempt == 1 then while true do end end
          return 1 end },
      } }
    ]])
    local pid = H.spawn(dir, "run p.lua", dir .. "/run.log")
    run_id = H.wait_for(function()
      local id = H.last_run(dir)
      local r = id and H.show(dir, id)
      local t = r and H.task(r, "slow")
      return t and t.state == "running" and id
    end, 30)
    assert.truthy(run_id, H.read(dir .. "/run.log"))
    os.execute("kill -9 " .. pid)
    assert.truthy(H.wait_dead(pid))
    -- a live process that is not weir, under the pid the run recorded
    local p = io.popen("sleep 60 >/dev/null 2>&1 & echo $!")
    other = tonumber(p:read("*l"))
    p:close()
    sql(dir, "UPDATE runs SET supervisor_pid = " .. other .. " WHERE id = '" .. run_id .. "'")
  end)
  teardown(function()
    if other then os.execute("kill " .. other .. " 2>/dev/null") end
    H.cleanup(dir)
  end)

  it("refuses while the recorded process is the supervisor, unless --force", function()
    -- make the record name the live process exactly, as a live supervisor's would
    local id = require("weir.run").identity(other)
    sql(dir, "UPDATE runs SET supervisor_id = '" .. id .. "' WHERE id = '" .. run_id .. "'")
    local code, _, err = H.weir(dir, "resume " .. run_id)
    assert.equal(3, code)
    assert.matches("is still running (supervisor pid " .. other .. "); if that process is not "
                   .. "its supervisor, weir resume --force takes the run over", err, 1, true)
    assert.equal("running", H.show(dir, run_id).status)
  end)

  it("takes the run over when the pid now belongs to another process", function()
    sql(dir, "UPDATE runs SET supervisor_id = 'another-boot:1', status = 'running' WHERE id = '"
             .. run_id .. "'")
    local code, _, err = H.weir(dir, "resume " .. run_id)
    assert.equal(0, code, err)
    assert.equal("success", H.show(dir, run_id).status)
  end)

  it("takes the run over with --force whatever the record says", function()
    local id = require("weir.run").identity(other)
    sql(dir, "UPDATE runs SET supervisor_pid = " .. other .. ", supervisor_id = '" .. id
             .. "', status = 'running' WHERE id = '" .. run_id .. "'")
    sql(dir, "UPDATE task_runs SET state = 'failed' WHERE run_id = '" .. run_id .. "'")
    local code, _, err = H.weir(dir, "resume --force " .. run_id)
    assert.equal(0, code, err)
    assert.equal("success", H.show(dir, run_id).status)
  end)
end)
