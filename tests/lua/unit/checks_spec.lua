-- weir.checks: what runs without a database (the rest is in
-- tests/e2e/quality_spec.lua and tests/integration/pg_checks_spec.lua).
local checks = require("weir.checks")

describe("weir.checks", function()
  it("reads ISO 8601 times and numbers as seconds since 1970", function()
    assert.equal(0, checks.epoch("1970-01-01"))
    assert.equal(1796601600, checks.epoch("2026-12-07"))
    assert.equal(1796601600 + 8 * 3600 + 30.5, checks.epoch("2026-12-07T08:00:30.5Z"))
    assert.equal(checks.epoch("2026-12-07T08:00:30.5Z"), checks.epoch("2026-12-07 08:00:30.5"))
    assert.equal(checks.epoch("2026-12-07T07:00:00Z"), checks.epoch("2026-12-07T08:00:00+01:00"))
    assert.equal(checks.epoch("2000-03-01") - 86400, checks.epoch("2000-02-29"))
    assert.equal(12.5, checks.epoch(12.5))
    assert.is_nil(checks.epoch("yesterday"))
    assert.is_nil(checks.epoch("2026-12-07 noon"))
  end)

  it("turns ctx.check's older rules into checks", function()
    local list = assert(checks.from_rules({ not_null = { "a", "b" }, unique = { "id" } }))
    assert.same({ { check = "row_count", min = 0 }, { check = "not_null", column = "a" },
                  { check = "not_null", column = "b" }, { check = "unique", column = "id" } }, list)
    list = assert(checks.from_rules({ { "range", column = "x", max = 3 } }))
    assert.same({ { check = "range", column = "x", max = 3 } }, list)
    local _, err = checks.from_rules({ nonsense = true })
    assert.matches("unknown rule nonsense", err, 1, true)
    _, err = checks.from_rules({ { "range", column = "x" } })
    assert.matches("[1]: range needs min or max", err, 1, true)
  end)

  it("names the options that belong to another kind of check", function()
    local errs = {}
    checks.validate({ { check = "unique", column = "a", values = { 1 } },
                      { check = "relationship", column = "a", to = "nodot" },
                      { check = "not_null", column = "a", columns = { "b" } } }, "c",
                    function(p, m) errs[#errs + 1] = p .. ": " .. m end)
    assert.same({ "c[1].values: not an option of unique (it takes column, columns)",
                  "c[2].to: expected TABLE.COLUMN",
                  "c[3]: give column or columns, not both" }, errs)
  end)

  it("masks the columns of sample rows whose names look secret", function()
    assert.same({ id = 1, password = "[masked]", API_KEY = "[masked]", db_token = "[masked]",
                  note = string.rep("x", 200) .. "..." },
                checks.sample({ id = 1, password = "p", API_KEY = "k", db_token = "t",
                                note = string.rep("x", 300) }))
  end)
end)
