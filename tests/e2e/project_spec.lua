-- One project, one home: weir.yaml is found next to the pipeline file or
-- above it, .weir lives in the project root, and configuration errors
-- name the file and stop the run before any task (or retry) runs.
local H = require("helpers")

local PIPE = [[
return pipeline { name = "daily", defaults = { retries = 2, retry_delay = "10ms" }, tasks = {
  a = task { run = function() return 1 end },
  b = task { after = { "a" }, run = function(ctx) ctx.source("wh") return 2 end },
} }
]]

describe("a project", function()
  local dir
  local unset = { WEIR_HOME = "" }
  before_each(function()
    dir = H.tmpdir()
    H.write(dir .. "/etl/daily.lua", PIPE)
  end)
  after_each(function() H.cleanup(dir) end)

  it("finds weir.yaml above the pipeline and keeps one history at its root", function()
    H.write(dir .. "/weir.yaml", "connections:\n  wh: { type: redis, url: \"redis://127.0.0.1:1\" }\n")
    local code, _, err = H.weir(dir, "run etl/daily.lua", unset)
    assert.equal(0, code, err)
    assert.is_true(H.succeeds("test -f " .. H.q(dir .. "/.weir/weir.db")))
    assert.is_false(H.succeeds("test -e " .. H.q(dir .. "/etl/.weir")))
    -- from the pipeline's folder, the same history
    local _, out = H.weir(dir .. "/etl", "runs", unset)
    assert.matches("daily%s+success", out)
    code, _, err = H.weir(dir .. "/etl", "run daily.lua --quiet", unset)
    assert.equal(0, code, err)
    local _, js = H.weir(dir, "runs --json", unset)
    assert.equal(2, #require("weir.json").decode(js))
  end)

  it("checks connection names at validate and before the run, naming where it looked", function()
    local code, _, err = H.weir(dir, "validate etl/daily.lua", unset)
    assert.equal(1, code)
    assert.matches("etl/daily.lua:3: ctx.source: unknown connection \"wh\" (none defined: no "
                   .. "weir.yaml (looked in " .. dir .. "/etl and the folders above))", err, 1, true)
    code, _, err = H.weir(dir, "run etl/daily.lua", unset)
    assert.equal(1, code)
    assert.matches("looked in " .. dir .. "/etl", err, 1, true)
    assert.is_nil(err:find("started", 1, true))
    -- the pipeline's folder is the root when there is no weir.yaml
    local _, out = H.weir(dir .. "/etl", "runs", unset)
    assert.equal("no runs yet\n", out)
    H.write(dir .. "/weir.yaml", "connections:\n  other: { type: redis }\n")
    code, _, err = H.weir(dir, "validate etl/daily.lua", unset)
    assert.equal(1, code)
    assert.matches("(" .. dir .. "/weir.yaml defines other)", err, 1, true)
  end)

  it("does not retry a configuration error or a memory cap", function()
    H.write(dir .. "/p.lua", [[
      local name = "w" .. "h"
      return pipeline { name = "p", defaults = { retries = 3, retry_delay = "10ms" }, tasks = {
        conn = task { run = function(ctx) ctx.source(name) end },
        mem = task { memory = "8MB", run = function()
          local t = {} for i = 1, 1e7 do t[i] = { i } end end },
      } }
    ]])
    local code, _, err = H.weir(dir, "run p.lua")
    assert.equal(1, code, err)
    local run = H.show(dir, H.last_run(dir))
    local conn, mem = H.task(run, "conn"), H.task(run, "mem")
    assert.equal(1, conn.attempts)
    assert.matches("no connection wh in no weir.yaml (looked in " .. dir, conn.error, 1, true)
    assert.equal(1, mem.attempts)
    assert.matches("memory limit of 8 MB exceeded", mem.error, 1, true)
  end)
end)
