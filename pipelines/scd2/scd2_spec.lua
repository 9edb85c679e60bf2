-- scd2 end to end on PostgreSQL: changes, a key that disappears and
-- returns, two changes sharing a timestamp, re-runs, the two faults.
local H = require("helpers")
local T = require("helpers_templates")

local function with(as_of, extra)
  return T.uses("scd2@1", '{ db = "wh", source_table = "sc_src", target_table = "sc_dim", key = { "id" }, '
                .. 'as_of = "' .. as_of .. '" }', extra)
end

H.describe_with("pg", "template scd2", function()
  local dir
  before_each(function()
    dir = T.project()
    T.psql("DROP TABLE IF EXISTS sc_src, sc_dim")
    T.psql("CREATE TABLE sc_src (id int, name text, city text)")
    T.psql("INSERT INTO sc_src VALUES (1, 'ada', 'london'), (2, 'grace', 'nyc')")
  end)
  after_each(function() H.cleanup(dir) end)

  local function dim()
    return T.psql("SELECT string_agg(id || ':' || city || ':' || to_char(valid_from AT TIME ZONE 'UTC', 'DD') "
                  .. "|| '-' || coalesce(to_char(valid_to AT TIME ZONE 'UTC', 'DD'), '') || ':' || "
                  .. "is_current, ' ' ORDER BY id, valid_from) FROM sc_dim")
  end
  local function merge(as_of, extra)
    local code, run, err = T.run(dir, with(as_of, extra))
    return code, run, err
  end

  it("keeps history through a change, a disappearance and a return", function()
    assert.equal(0, (merge("2026-12-01T00:00:00Z")))
    assert.equal("1:london:01-:true 2:nyc:01-:true", dim())
    T.psql("UPDATE sc_src SET city = 'paris' WHERE id = 1; DELETE FROM sc_src WHERE id = 2")
    assert.equal(0, (merge("2026-12-02T00:00:00Z")))
    assert.equal("1:london:01-02:false 1:paris:02-:true 2:nyc:01-02:false", dim())
    -- a re-run of the same change time finds nothing to do
    local _, run = merge("2026-12-02T00:00:00Z")
    local out = H.task(run, "t").attempt_list[1].output
    assert.same({ 0, 0, 0, 0 }, { out.inserted, out.closed, out.gone, out.replaced })
    -- key 2 returns
    T.psql("INSERT INTO sc_src VALUES (2, 'grace', 'nyc')")
    assert.equal(0, (merge("2026-12-03T00:00:00Z")))
    assert.equal("1:london:01-02:false 1:paris:02-:true 2:nyc:01-02:false 2:nyc:03-:true", dim())
    -- an earlier change time is refused
    local code, run2 = merge("2026-12-01T00:00:00Z")
    assert.equal(1, code)
    assert.matches("earlier than the dimension's latest change", H.task(run2, "t").error)
  end)

  it("keeps one version per key and instant when two changes share a timestamp", function()
    assert.equal(0, (merge("2026-12-01T00:00:00Z")))
    T.psql("UPDATE sc_src SET city = 'paris' WHERE id = 1")
    assert.equal(0, (merge("2026-12-05T00:00:00Z")))
    T.psql("UPDATE sc_src SET city = 'rome' WHERE id = 1")
    assert.equal(0, (merge("2026-12-05T00:00:00Z")))
    assert.equal("1:london:01-05:false 1:rome:05-:true 2:nyc:01-:true", dim())
  end)

  it("merges once under an attempt failing after commit and a killed worker", function()
    local code, run = merge("2026-12-01T00:00:00Z", T.FAIL_AFTER_COMMIT)
    assert.equal(1, code)
    assert.equal(3, (T.attempts(run)))
    assert.equal("1:london:01-:true 2:nyc:01-:true", dim())
    T.psql("UPDATE sc_src SET city = 'paris' WHERE id = 1")
    code, run = T.run_with_lock(dir, with("2026-12-02T00:00:00Z", T.KILLED),
                                "LOCK TABLE sc_dim IN EXCLUSIVE MODE", 3)
    assert.equal(0, code)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal("1:london:01-02:false 1:paris:02-:true 2:nyc:01-:true", dim())
  end)
end)
