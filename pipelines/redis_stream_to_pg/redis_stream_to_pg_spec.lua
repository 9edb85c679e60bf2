-- redis_stream_to_pg end to end: entries loaded once and acknowledged
-- after commit, under a killed worker and an attempt failing after it.
local H = require("helpers")
local T = require("helpers_templates")

local WITH = '{ redis = "cache", stream = "rs:events", db = "wh", table = "rs_events", '
  .. 'fields = { "user", "action" }, batch = 2 }'

H.describe_with("pg", "template redis_stream_to_pg", function()
  local dir
  before_each(function()
    if not T.REDIS.url then pending("WEIR_TEST_REDIS_URL is unset") end
    dir = T.project()
    T.psql("DROP TABLE IF EXISTS rs_events")
    T.redis("DEL rs:events")
    for i = 1, 5 do T.redis("XADD rs:events '*' user u" .. i .. " action click extra x") end
  end)
  after_each(function() H.cleanup(dir) end)

  local function loaded()
    return T.psql("SELECT count(*), count(DISTINCT stream_id), string_agg(\"user\", ',' ORDER BY stream_id) "
                  .. "FROM rs_events")
  end
  local function pending_n() return T.redis("XPENDING rs:events weir"):match("^(%d+)") end

  it("loads every entry once, acknowledged, and only new ones on the next run", function()
    local code, run, err = T.run(dir, T.uses("redis_stream_to_pg@1", WITH))
    assert.equal(0, code, err)
    assert.equal("5|5|u1,u2,u3,u4,u5", loaded())
    assert.equal(3, H.task(run, "t").attempt_list[1].output.batches)
    assert.equal("0", pending_n())
    T.redis("XADD rs:events '*' user u6 action view")
    code, run, err = T.run(dir, T.uses("redis_stream_to_pg@1", WITH))
    assert.equal(0, code, err)
    assert.equal(1, H.task(run, "t").attempt_list[1].output.loaded)
    assert.equal("6|6|u1,u2,u3,u4,u5,u6", loaded())
  end)

  it("loads once when the worker is killed before its commit", function()
    T.psql("CREATE TABLE rs_events (stream_id text PRIMARY KEY, \"user\" text, action text)")
    local code, run, err = T.run_with_lock(dir, T.uses("redis_stream_to_pg@1", WITH, T.KILLED),
                                           "LOCK TABLE rs_events IN EXCLUSIVE MODE", 3)
    assert.equal(0, code, err)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal("5|5|u1,u2,u3,u4,u5", loaded())
    assert.equal("0", pending_n())
  end)

  it("loads once when entries were committed but not acknowledged", function()
    -- a consumer that read two entries and died before XACK: they are
    -- pending; say the first was committed already
    T.redis("XGROUP CREATE rs:events weir 0")
    local ids = T.redis("XREADGROUP GROUP weir weir COUNT 2 STREAMS rs:events '>'")
    local first = ids:match("(%d+%-%d+)")
    T.psql("CREATE TABLE rs_events (stream_id text PRIMARY KEY, \"user\" text, action text)")
    T.psql("INSERT INTO rs_events VALUES ('" .. first .. "', 'u1', 'click')")
    assert.equal("2", pending_n())
    local code, _, err = T.run(dir, T.uses("redis_stream_to_pg@1", WITH, T.FAIL_AFTER_COMMIT))
    assert.equal(1, code, err)
    assert.equal("5|5|u1,u2,u3,u4,u5", loaded())
    assert.equal("0", pending_n())
  end)
end)
