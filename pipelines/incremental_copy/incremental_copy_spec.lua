-- incremental_copy end to end on PostgreSQL: first full copy, changed
-- rows, a row committed late with an older watermark, no duplicates, and
-- the two faults.
local H = require("helpers")
local T = require("helpers_templates")

local WITH = '{ source = "wh", source_table = "ic_src", target = "wh", target_table = "ic_dst", '
  .. 'key = { "id" }, watermark = "updated_at", lookback = "1 hour" }'

H.describe_with("pg", "template incremental_copy", function()
  local dir
  before_each(function()
    dir = T.project()
    T.psql("DROP TABLE IF EXISTS ic_src, ic_dst")
    T.psql("CREATE TABLE ic_src (id int PRIMARY KEY, v text, updated_at timestamptz)")
    T.psql("INSERT INTO ic_src VALUES (1, 'a', '2026-12-01 10:00Z'), (2, 'b', '2026-12-01 11:00Z'), "
           .. "(3, 'c', '2026-12-01 12:00Z')")
  end)
  after_each(function() H.cleanup(dir) end)

  local function dst()
    return T.psql("SELECT count(*), count(DISTINCT id), string_agg(id || v, ',' ORDER BY id) FROM ic_dst")
  end

  it("copies everything, then changes and late rows, never twice", function()
    local code, _, err = T.run(dir, T.uses("incremental_copy@1", WITH))
    assert.equal(0, code, err)
    assert.equal("3|3|1a,2b,3c", dst())
    local run
    -- a change, a new row, and a row committed now with an older
    -- watermark than the high-water mark (12:00): within the lookback
    T.psql("UPDATE ic_src SET v = 'A', updated_at = '2026-12-01 13:00Z' WHERE id = 1")
    T.psql("INSERT INTO ic_src VALUES (4, 'd', '2026-12-01 14:00Z'), (5, 'late', '2026-12-01 11:30Z')")
    code, run, err = T.run(dir, T.uses("incremental_copy@1", WITH))
    assert.equal(0, code, err)
    assert.equal("5|5|1A,2b,3c,4d,5late", dst())
    assert.equal("2026-12-01 12:00:00+00", H.task(run, "t").attempt_list[1].output.from)
    -- a re-run with nothing new changes nothing
    code, _, err = T.run(dir, T.uses("incremental_copy@1", WITH))
    assert.equal(0, code, err)
    assert.equal("5|5|1A,2b,3c,4d,5late", dst())
  end)

  it("copies once when every attempt fails after its load committed", function()
    local code, run = T.run(dir, T.uses("incremental_copy@1", WITH, T.FAIL_AFTER_COMMIT))
    assert.equal(1, code)
    assert.equal(3, (T.attempts(run)))
    assert.equal("3|3|1a,2b,3c", dst())
  end)

  it("copies once when the worker is killed in the middle of the load", function()
    T.psql("CREATE TABLE ic_dst (id int PRIMARY KEY, v text, updated_at timestamptz)")
    local code, run, err = T.run_with_lock(dir, T.uses("incremental_copy@1", WITH, T.KILLED),
                                           "LOCK TABLE ic_dst IN EXCLUSIVE MODE", 3)
    assert.equal(0, code, err)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal("3|3|1a,2b,3c", dst())
  end)
end)
