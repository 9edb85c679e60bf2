local sandbox = require("weir.sandbox")
local H = require("helpers")

describe("weir.sandbox", function()
  it("builds environments that only reach the allow-list", function()
    local env = sandbox.new()
    for _, name in ipairs(sandbox.deny) do
      local first, rest = name:match("^([^.]+)%.?(.*)$")
      local ok, v = pcall(function()
        local x = env[first]
        if rest ~= "" then x = x[rest] end
        return x
      end)
      assert.is_true(not ok or v == nil, name .. " is reachable")
    end
  end)

  it("gives every environment its own library tables", function()
    local a, b = sandbox.new(), sandbox.new()
    assert.are_not.equal(a.string, b.string)
    assert.equal(a.string.format, b.string.format)
    assert.has_error(function() a.string.format = nil end)
  end)

  it("describes error values without calling metamethods", function()
    local called = false
    local e = setmetatable({}, { __tostring = function() called = true return "x" end,
                                 __index = function() called = true end })
    assert.equal("error object (table)", sandbox.describe_error(e))
    assert.is_false(called)
    assert.equal("boom", sandbox.describe_error({ message = "boom" }))
    assert.equal(4096 + #"... (truncated)", #sandbox.describe_error(string.rep("x", 10000)))
  end)

  it("lists exactly the documented names in docs/security.md", function()
    local doc = H.read(H.src .. "/docs/security.md")
    assert.truthy(doc, "docs/security.md is missing")
    for lib, names in pairs(sandbox.allow) do
      for _, n in ipairs(names) do
        local dotted = lib == "base" and n or (lib .. "." .. n)
        assert.truthy(doc:find("`" .. dotted .. "`", 1, true), dotted .. " not documented")
      end
    end
    for _, n in ipairs(sandbox.deny) do
      assert.truthy(doc:find("`" .. n .. "`", 1, true), n .. " not documented as denied")
    end
  end)
end)
