-- table_to_redis end to end: PostgreSQL rows become Redis hashes.
local H = require("helpers")
local T = require("helpers_templates")

local WITH = '{ source = "wh", redis = "cache", query = "SELECT id, name, score FROM tr_players", '
  .. 'key = "id", prefix = "tr:player:", ttl = 600 }'

H.describe_with("pg", "template table_to_redis", function()
  local dir
  before_each(function()
    if not T.REDIS.url then pending("WEIR_TEST_REDIS_URL is unset") end
    dir = T.project()
    T.psql("DROP TABLE IF EXISTS tr_players")
    T.psql("CREATE TABLE tr_players (id int, name text, score int)")
    T.psql("INSERT INTO tr_players VALUES (1, 'ada', 10), (2, 'grace', NULL), (3, 'linus', 7)")
    T.redis("FLUSHDB")
  end)
  after_each(function() H.cleanup(dir) end)

  local function cache()
    return T.redis("--scan --pattern 'tr:player:*'"):gsub("\n", " ") .. " | "
      .. T.redis("HGET tr:player:1 name") .. " " .. T.redis("HGET tr:player:1 score") .. " "
      .. T.redis("HEXISTS tr:player:2 score")
  end

  it("writes one hash per row with a TTL, NULL columns left out", function()
    local code, _, err = T.run(dir, T.uses("table_to_redis@1", WITH))
    assert.equal(0, code, err)
    assert.equal("3", T.redis("DBSIZE"))
    assert.equal("ada 10 0", cache():match("| (.*)$"))
    local ttl = tonumber(T.redis("TTL tr:player:3"))
    assert.is_true(ttl > 0 and ttl <= 600)
  end)

  it("writes the same keys under an attempt failing after its writes and a killed worker", function()
    local code, run = T.run(dir, T.uses("table_to_redis@1", WITH, T.FAIL_AFTER_COMMIT))
    assert.equal(1, code)
    assert.equal(3, (T.attempts(run)))
    assert.equal("3", T.redis("DBSIZE"))
    T.redis("FLUSHDB")
    -- the query waits for the lock: the attempt is killed before writing
    code, run = T.run_with_lock(dir, T.uses("table_to_redis@1", WITH, T.KILLED),
                                "LOCK TABLE tr_players IN ACCESS EXCLUSIVE MODE", 3)
    assert.equal(0, code)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal("3", T.redis("DBSIZE"))
    assert.equal("ada 10 0", cache():match("| (.*)$"))
  end)
end)
