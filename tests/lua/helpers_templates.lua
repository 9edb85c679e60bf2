-- helpers_templates.lua - what the specs of the template library
-- (pipelines/NAME/NAME_spec.lua) share: a project folder with weir.yaml
-- reaching the suite's PostgreSQL ("wh") and Redis ("cache"), psql and
-- redis-cli, and the two faults every template must survive: an attempt
-- that fails after its load committed (retried), and a worker killed at
-- its deadline in the middle of the load (a lock held on the target).
local H = require("helpers")

local M = {}

local PG = H.service("pg") or {}
local RD = H.service("redis") or {}
M.PG, M.REDIS = PG, RD

--- A project folder: weir.yaml with the connections of the services
-- that are there.
function M.project()
  local dir = H.tmpdir()
  local y = "connections:\n"
  if PG.url then
    y = y .. '  wh:\n    type: postgres\n    url: "postgres://weir:${env:WEIR_PW}@127.0.0.1:'
      .. PG.port .. '/postgres"\n    sslmode: disable\n'
  end
  if RD.url then
    y = y .. '  cache:\n    type: redis\n    url: "redis://:${env:WEIR_REDIS_PW}@127.0.0.1:'
      .. RD.port .. '/5"\n'
  end
  H.write(dir .. "/weir.yaml", y)
  return dir
end

--- weir ARGS in dir, the passwords in the environment only.
function M.weir(dir, args)
  return H.weir(dir, args, { WEIR_PW = PG.password or "", WEIR_REDIS_PW = RD.password or "" })
end

function M.psql(sql)
  return (H.output("psql " .. H.q(PG.url) .. " -Atqc " .. H.q(sql) .. " 2>&1"):gsub("%s+$", ""))
end

function M.redis(args)
  return (H.output("redis-cli -p " .. RD.port .. " -a " .. H.q(RD.password) .. " -n 5 --no-auth-warning "
                   .. args .. " 2>&1"):gsub("%s+$", ""))
end

--- Write src as dir/p.lua, run it; returns code, the run (weir show),
-- stderr.
function M.run(dir, src, args)
  H.write(dir .. "/p.lua", src)
  local code, _, err = M.weir(dir, "run p.lua --quiet " .. (args or ""))
  local id = H.last_run(dir)
  return code, id and H.show(dir, id), err
end

--- A pipeline with one task using template ref with `with` (Lua source
-- of a table) and extra task fields (Lua source).
function M.uses(ref, with, extra)
  return string.format([[
return pipeline {
  name = "t",
  tasks = { t = task { uses = %q, with = %s, %s } },
}]], ref, with, extra or "")
end

--- Fault 1: every attempt fails after its load committed (its output
-- cannot be stored: output_max = 1 byte), three attempts in all. The
-- run fails; what the template wrote must be there once.
M.FAIL_AFTER_COMMIT = 'retries = 2, retry_delay = "10ms", output_max = 1'

--- Fault 2: the first attempt is SIGKILLed at its deadline in the middle
-- of its load: a session holds `lock_sql` (e.g. LOCK TABLE t IN
-- EXCLUSIVE MODE: reads pass, writes wait) for `hold` seconds; the retry
-- runs once it is gone. args: more `weir run` arguments. Returns the
-- run's code, the run, stderr.
M.KILLED = 'timeout = "1500ms", retries = 3, retry_delay = "1500ms"'
function M.run_with_lock(dir, src, lock_sql, hold, args)
  local marker = "weir-lock-" .. tostring(os.time()) .. tostring(math.random(1e6))
  H.output("(psql " .. H.q(PG.url) .. " -qc " .. H.q("BEGIN; " .. lock_sql .. "; SELECT '"
           .. marker .. "', pg_sleep(" .. (hold or 3) .. "); COMMIT") .. " >/dev/null 2>&1 &)")
  assert(H.wait_for(function()
    return M.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%" .. marker
                  .. "%' AND pid <> pg_backend_pid() AND wait_event = 'PgSleep'") == "1"
  end, 10), "the lock was not taken")
  return M.run(dir, src, args)
end

--- The attempts of task name in run, and whether one was killed at its
-- deadline.
function M.attempts(run, name)
  local t = H.task(run, name or "t")
  local killed = false
  for _, a in ipairs(t.attempt_list or {}) do
    if tostring(a.error):find("timed out", 1, true) then killed = true end
  end
  return t.attempts, killed, t
end

return M
