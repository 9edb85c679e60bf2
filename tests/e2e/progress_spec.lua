-- Watching long work from weir run: a retry says when and which attempt,
-- and no event carries an earlier attempt's error. (Progress frames and
-- their views: attempt_spec and view_spec.)
local H = require("helpers")
local json = require("weir.json")

describe("weir run while a task runs", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("says when a task is retried and which attempt comes", function()
    local code, _, err = H.run_pipeline(dir, [[
return pipeline { name = "r", tasks = {
  flaky = task { retries = 2, retry_delay = "10ms", run = function(ctx)
    if ctx.attempt < 2 then error("not yet", 0) end
    return ctx.attempt
  end } } }]])
    assert.equal(0, code, err)
    assert.matches("flaky%s+up_for_retry: not yet; retrying in %d+%.%ds %(attempt 2/3%)", err)
    local _, _, jerr = H.weir(dir, "run p.lua --log-format json")
    local retry
    for line in jerr:gmatch("[^\n]+") do
      local e = json.decode(line)
      if e.state == "up_for_retry" then retry = e end
      -- an event never carries an earlier attempt's error
      if e.state == "running" or e.state == "queued" or e.state == "success" then
        assert.is_nil(e.error, line)
      end
    end
    assert.same({ "not yet", 2, 3 }, { retry.error, retry.next_attempt, retry.max_attempts })
    assert.is_number(retry.retry_in)
  end)
end)
