-- daily_aggregate end to end on PostgreSQL: the day param, the logical
-- time of a backfill, re-runs and the two faults.
local H = require("helpers")
local T = require("helpers_templates")

local WITH = '{ db = "wh", source_table = "da_orders", time_column = "at", target_table = "da_daily", '
  .. 'group_by = { "country" }, measures = { revenue = "sum:amount", orders = "count:*" }, '
  .. 'day = "${params.day}" }'
local SRC = [[
return pipeline {
  name = "daily",
  schedule = "0 2 * * *",
  -- one day at a time: the first runs would race to create the table
  max_active_runs = 1,
  params = { day = { type = "string", default = "" } },
  tasks = { t = task { uses = "daily_aggregate@1", with = ]] .. WITH .. [[, %s } },
}]]

H.describe_with("pg", "template daily_aggregate", function()
  local dir
  before_each(function()
    dir = T.project()
    T.psql("DROP TABLE IF EXISTS da_orders, da_daily")
    T.psql("CREATE TABLE da_orders (id int, country text, amount numeric, at timestamptz)")
    T.psql("INSERT INTO da_orders VALUES (1, 'de', 10, '2026-12-05 23:59Z'), (2, 'de', 5, '2026-12-06 00:00Z'), "
           .. "(3, 'fr', 7, '2026-12-06 12:00Z'), (4, 'de', 1, '2026-12-06 23:59:59Z'), "
           .. "(5, 'fr', 2, '2026-12-07 00:00Z')")
  end)
  after_each(function() H.cleanup(dir) end)

  local function daily()
    return T.psql("SELECT string_agg(day || ' ' || country || ' ' || revenue || ' ' || orders, ', ' "
                  .. "ORDER BY day, country) FROM da_daily")
  end

  it("aggregates the day param's day, and replaces it on a re-run", function()
    local code, _, err = T.run(dir, SRC:format(""), "--param day=2026-12-06")
    assert.equal(0, code, err)
    assert.equal("2026-12-06 de 6 2, 2026-12-06 fr 7 1", daily())
    T.psql("INSERT INTO da_orders VALUES (6, 'fr', 100, '2026-12-06 13:00Z')")
    code, _, err = T.run(dir, SRC:format(""), "--param day=2026-12-06")
    assert.equal(0, code, err)
    assert.equal("2026-12-06 de 6 2, 2026-12-06 fr 107 2", daily())
  end)

  it("aggregates the day before a backfilled run's logical time", function()
    H.write(dir .. "/pipelines/p.lua", SRC:format(""))
    H.write(dir .. "/weir.yaml", H.read(dir .. "/weir.yaml") .. "pipelines: [pipelines]\n")
    local code, out = T.weir(dir, "keys create ops --role operator")
    assert.equal(0, code)
    local key = out:match("(weir_%S+)")
    local pid, url = H.serve(dir, { WEIR_PW = T.PG.password, WEIR_REDIS_PW = T.REDIS.password or "" })
    local err
    code, out, err = H.weir(dir, "backfill daily --from 2026-12-06 --to 2026-12-07T03:00:00Z",
                            { WEIR_SERVER = url, WEIR_TOKEN = key })
    assert.equal(0, code, (out or "") .. (err or ""))
    local done = H.wait_for(function()
      return daily() == "2026-12-05 de 10 1, 2026-12-06 de 6 2, 2026-12-06 fr 7 1"
    end, 60)
    local why = daily() .. "\n" .. select(2, T.weir(dir, "runs"))
    -- the run is over: no need to drain
    os.execute("kill -9 " .. pid)
    assert.truthy(H.wait_dead(pid))
    assert.truthy(done, why)
  end)

  it("leaves one set of rows per day under an attempt failing after commit and a killed worker", function()
    local code, run = T.run(dir, SRC:format(T.FAIL_AFTER_COMMIT), "--param day=2026-12-06")
    assert.equal(1, code)
    assert.equal(3, (T.attempts(run)))
    assert.equal("2026-12-06 de 6 2, 2026-12-06 fr 7 1", daily())
    code, run = T.run_with_lock(dir, SRC:format(T.KILLED), "LOCK TABLE da_daily IN EXCLUSIVE MODE", 3,
                                "--param day=2026-12-06")
    assert.equal(0, code)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal("2026-12-06 de 6 2, 2026-12-06 fr 7 1", daily())
  end)
end)
