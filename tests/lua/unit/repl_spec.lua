-- weir.repl's reading of input: when a chunk is complete (the rest of the
-- REPL runs through a terminal in tests/e2e/repl_spec.lua).
local repl = require("weir.repl")

describe("weir.repl.incomplete", function()
  it("waits for the rest of an open block, call, table, string or comment", function()
    for _, chunk in ipairs({ "function f()", "for i = 1, 3 do", "if x then", "t = {",
                             "f(1,", "s = [[long", "--[[ comment", "x = 1 +",
                             "local function g()\n  return 1" }) do
      assert.is_true(repl.incomplete(chunk), chunk)
    end
  end)

  it("takes complete chunks, and errors that more input cannot fix", function()
    for _, chunk in ipairs({ "x = 1", "1 + 1", "f(1)", "function f() end", "x = = 1",
                             "end", "s = 'open", "local function g()\n  return 1\nend" }) do
      assert.is_false(repl.incomplete(chunk), chunk)
    end
  end)
end)
