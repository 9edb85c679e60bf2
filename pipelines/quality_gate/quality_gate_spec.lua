-- quality_gate end to end on SQLite: a gate that stops the tasks after
-- it, one that warns, and a re-run (it only reads).
local H = require("helpers")
local T = require("helpers_templates")

local SRC = [[
return pipeline {
  name = "gated",
  tasks = {
    publish = task { after = { "gate" }, run = function() return "published" end },
  },
  include = {
    gate = template("quality_gate@1", { database = "out/q.db", table = "t", severity = %q,
      rules = { not_null = { "email" }, unique = { "id" }, row_count = { min = 1 } } }),
  },
}]]

describe("template quality_gate", function()
  local dir
  before_each(function()
    dir = T.project()
    os.execute("mkdir -p " .. H.q(dir .. "/out"))
    assert.is_true(H.succeeds("sqlite3 " .. H.q(dir .. "/out/q.db") .. " \"CREATE TABLE t (id INTEGER, "
                              .. "email TEXT); INSERT INTO t VALUES (1, 'a'), (1, NULL)\""))
  end)
  after_each(function() H.cleanup(dir) end)

  it("fails and keeps the tasks after it from running", function()
    local code, run = T.run(dir, SRC:format("fail"))
    assert.equal(1, code)
    assert.equal("failed", H.task(run, "gate.check").state)
    assert.matches("not_null%(email%): 1 row%(s%) with a null; unique%(id%): 1 row%(s%) repeat",
                   H.task(run, "gate.check").error)
    assert.equal("upstream_failed", H.task(run, "publish").state)
  end)

  it("warns and lets them run; passes once the data is fixed, on every re-run", function()
    local code, run, err = T.run(dir, SRC:format("warn"))
    assert.equal(0, code, err)
    local out = H.task(run, "gate.check").attempt_list[1].output
    assert.is_false(out.passed)
    assert.equal("success", H.task(run, "publish").state)
    assert.is_true(H.succeeds("sqlite3 " .. H.q(dir .. "/out/q.db") .. " \"DELETE FROM t WHERE email IS NULL\""))
    for _ = 1, 2 do
      code, run, err = T.run(dir, SRC:format("fail"))
      assert.equal(0, code, err)
      assert.is_true(H.task(run, "gate.check").attempt_list[1].output.passed)
    end
  end)
end)
