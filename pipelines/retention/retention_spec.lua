-- retention end to end: PostgreSQL (bounded batches, a killed worker, an
-- attempt failing after its deletes) and SQLite.
local H = require("helpers")
local T = require("helpers_templates")

H.describe_with("pg", "template retention on PostgreSQL", function()
  local dir
  before_each(function()
    dir = T.project()
    T.psql("DROP TABLE IF EXISTS rt_events")
    T.psql("CREATE TABLE rt_events (id int, at timestamptz)")
    -- 25 rows of 40 days ago, 5 of 10 days ago, 3 of today
    T.psql("INSERT INTO rt_events SELECT g, now() - interval '40 days' FROM generate_series(1, 25) g")
    T.psql("INSERT INTO rt_events SELECT g, now() - interval '10 days' FROM generate_series(26, 30) g")
    T.psql("INSERT INTO rt_events SELECT g, now() FROM generate_series(31, 33) g")
  end)
  after_each(function() H.cleanup(dir) end)

  local WITH = '{ target = "wh", table = "rt_events", column = "at", days = 30, batch = 10 }'

  it("deletes the old rows in batches, and only those", function()
    local code, run, err, _ = T.run(dir, T.uses("retention@1", WITH))
    assert.equal(0, code, err)
    local out = H.task(run, "t").attempt_list[1].output
    assert.equal(25, out.deleted)
    assert.equal(3, out.batches)
    assert.equal("8|26", T.psql("SELECT count(*), min(id) FROM rt_events"))
    code, _, err = T.run(dir, T.uses("retention@1",
      '{ target = "wh", table = "rt_events", column = "at", days = 5, batch = 2 }'))
    assert.equal(0, code, err)
    assert.equal("3|31", T.psql("SELECT count(*), min(id) FROM rt_events"))
  end)

  it("leaves the same rows under an attempt failing after its deletes and a killed worker", function()
    local code, run = T.run(dir, T.uses("retention@1", WITH, T.FAIL_AFTER_COMMIT))
    assert.equal(1, code)
    assert.equal(3, (T.attempts(run)))
    assert.equal("8|26", T.psql("SELECT count(*), min(id) FROM rt_events"))
    T.psql("INSERT INTO rt_events SELECT g, now() - interval '40 days' FROM generate_series(100, 120) g")
    code, run = T.run_with_lock(dir, T.uses("retention@1", WITH, T.KILLED),
                                "LOCK TABLE rt_events IN EXCLUSIVE MODE", 3)
    assert.equal(0, code)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal("8|26", T.psql("SELECT count(*), min(id) FROM rt_events"))
  end)
end)

describe("template retention on SQLite", function()
  it("deletes rows older than N days by their ISO 8601 text", function()
    local dir = T.project()
    local db = dir .. "/out/r.db"
    os.execute("mkdir -p " .. H.q(dir .. "/out"))
    assert.is_true(H.succeeds("sqlite3 " .. H.q(db) .. " \"CREATE TABLE ev (id INTEGER, at TEXT); "
      .. "INSERT INTO ev VALUES (1, strftime('%Y-%m-%dT%H:%M:%S', 'now', '-40 days')), "
      .. "(2, strftime('%Y-%m-%dT%H:%M:%S', 'now', '-31 days')), "
      .. "(3, strftime('%Y-%m-%dT%H:%M:%S', 'now', '-2 days'))\""))
    local code, run, err = T.run(dir, T.uses("retention@1",
      '{ target = "sqlite:out/r.db", table = "ev", column = "at", days = 30, batch = 1 }'))
    assert.equal(0, code, err)
    assert.equal(2, H.task(run, "t").attempt_list[1].output.deleted)
    assert.equal("3", H.output("sqlite3 " .. H.q(db) .. " 'SELECT group_concat(id) FROM ev'"):gsub("%s+$", ""))
    H.cleanup(dir)
  end)
end)
