-- dedupe_latest end to end on PostgreSQL.
local H = require("helpers")
local T = require("helpers_templates")

local WITH = '{ db = "wh", source_table = "dd_src", target_table = "dd_dst", key = { "k" }, '
  .. 'order_by = "at" }'

H.describe_with("pg", "template dedupe_latest", function()
  local dir
  before_each(function()
    dir = T.project()
    T.psql("DROP TABLE IF EXISTS dd_src, dd_dst")
    T.psql("CREATE TABLE dd_src (k int, v text, at int)")
    -- k=1: latest is v=c; k=2: two rows share the latest `at` (the
    -- choice is by the row's text: the same on every run)
    T.psql("INSERT INTO dd_src VALUES (1, 'a', 1), (1, 'c', 3), (1, 'b', 2), (2, 'x', 5), (2, 'y', 5), "
           .. "(3, 'only', 1)")
  end)
  after_each(function() H.cleanup(dir) end)

  local function dst() return T.psql("SELECT string_agg(k || v, ',' ORDER BY k) FROM dd_dst") end

  it("keeps the latest row of each key, the same on a re-run", function()
    local code, _, err = T.run(dir, T.uses("dedupe_latest@1", WITH))
    assert.equal(0, code, err)
    assert.equal("1c,2y,3only", dst())
    T.psql("INSERT INTO dd_src VALUES (3, 'newer', 2)")
    code, _, err = T.run(dir, T.uses("dedupe_latest@1", WITH))
    assert.equal(0, code, err)
    assert.equal("1c,2y,3newer", dst())
  end)

  it("writes once under an attempt failing after commit and under a killed worker", function()
    local code, run = T.run(dir, T.uses("dedupe_latest@1", WITH, T.FAIL_AFTER_COMMIT))
    assert.equal(1, code)
    assert.equal(3, (T.attempts(run)))
    assert.equal("1c,2y,3only", dst())
    code, run = T.run_with_lock(dir, T.uses("dedupe_latest@1", WITH, T.KILLED),
                                "LOCK TABLE dd_dst IN EXCLUSIVE MODE", 3)
    assert.equal(0, code)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal("1c,2y,3only", dst())
  end)
end)
