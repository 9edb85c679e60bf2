-- weir.view: what weir run prints of progress, log lines and retries.
local view = require("weir.view")

-- a file-like sink
local function sink()
  local buf = {}
  return { write = function(self, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = s end
                                      return self end,
           text = function() return table.concat(buf) end }
end

describe("weir.view", function()
  it("prints log lines and progress as they come off a terminal", function()
    local out = sink()
    local v = view.new("plain", out, 0)
    local t = { name = "load", attempt = 1 }
    v.task(t, "running")
    t.rows_in, t.rows_out, t.rejected = 12000, 11990, 10
    v.progress(t, { "opened \27[2Kthe file" })
    local text = out.text()
    assert.matches("load%s+| opened \\x1b%[2Kthe file\n", text)
    assert.matches("load%s+running  12000 read  11990 written  10 rejected  %d+ rows/s\n", text)
  end)

  it("emits log and progress events with --log-format json", function()
    local out = sink()
    local v = view.new("json", out, 0)
    local t = { name = "load", attempt = 2, error = "an earlier attempt's error" }
    v.task(t, "running")
    t.rows_in, t.rows_out, t.rejected = 5, 4, 1
    v.progress(t, { "hello" })
    local lines = {}
    for l in out.text():gmatch("[^\n]+") do lines[#lines + 1] = require("weir.json").decode(l) end
    assert.same({ "task", "running" }, { lines[1].event, lines[1].state })
    assert.is_nil(lines[1].error)
    assert.same({ "log", "load", 2, "hello" }, { lines[2].event, lines[2].task, lines[2].attempt,
                                                 lines[2].line })
    assert.same({ "progress", 5, 4, 1 }, { lines[3].event, lines[3].rows_in, lines[3].rows_out,
                                           lines[3].rejected })
  end)

  it("says when a retry comes and which attempt it is", function()
    local out = sink()
    local v = view.new("plain", out)
    local t = { name = "api", attempt = 1, error = "503", retry_in = 1.04, next_attempt = 2,
                max_attempts = 3 }
    v.task(t, "up_for_retry")
    assert.matches("api%s+up_for_retry: 503; retrying in 1.0s %(attempt 2/3%)", out.text())
  end)
end)
