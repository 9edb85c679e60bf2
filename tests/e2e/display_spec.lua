-- What weir prints of a task's words: a task's errors, logs and outputs
-- cannot drive the terminal (cursor moves, line erasing, window titles).
local H = require("helpers")

describe("weir run and weir show on hostile task text", function()
  local dir
  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/p.lua", [[
return pipeline {
  name = "p",
  tasks = {
    ok = task { run = function(ctx)
      ctx.log("\27]0;owned\7 log \27[2K\r")
      return "\27[31mred\27[0m \194\155"
    end },
    bad = task { run = function() error("\27[2K\rrun p success\27[1A\255", 0) end },
  },
}
]])
  end)
  teardown(function() H.cleanup(dir) end)

  local function clean(what, s)
    assert.is_nil(s:find("[\27\7\13\255]"), what .. " printed a control byte: " .. s)
    assert.is_nil(s:find("\194\155", 1, true), what .. " printed a C1 control")
  end

  it("escapes control characters in the run's output and in weir show", function()
    local code, _, err = H.weir(dir, "run p.lua")
    assert.equal(1, code)
    clean("weir run", err)
    assert.matches("\\x1b[2K\\x0drun p success", err, 1, true)
    local id = err:match("run (%S+) of p started")
    local scode, out = H.weir(dir, "show " .. id)
    assert.equal(0, scode)
    clean("weir show", out)
    assert.matches("\\x1b]0;owned\\x07 log", out, 1, true)
    assert.matches("\\u001b[31mred", out, 1, true)   -- outputs are JSON
  end)
end)
