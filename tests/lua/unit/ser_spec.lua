local ser = require("weir._ser")
local sandbox = require("weir.sandbox")

describe("weir._ser", function()
  it("round-trips plain values, sharing and cycles", function()
    local shared = { 1, 2 }
    local v = { a = "x", b = 1.5, c = true, d = { shared, shared }, e = -0.25, [7] = "seven" }
    v.self = v
    local back = assert(ser.decode(assert(ser.encode(v))))
    assert.equal("x", back.a)
    assert.equal(1.5, back.b)
    assert.equal(back, back.self)
    assert.equal(back.d[1], back.d[2])
    assert.equal("seven", back[7])
  end)

  it("keeps special numbers", function()
    local back = ser.decode(ser.encode({ math.huge, -math.huge, 0 / 0, 2 ^ 53 + 0.5 }))
    assert.equal(math.huge, back[1])
    assert.equal(-math.huge, back[2])
    assert.is_true(back[3] ~= back[3])
    assert.equal(2 ^ 53 + 0.5, back[4])
  end)

  it("marks sequences with array_mt on decode", function()
    local mt = {}
    local back = ser.decode(ser.encode({ list = { "a", "b" }, map = { k = 1 } }), { array_mt = mt })
    assert.equal(mt, getmetatable(back.list))
    assert.is_nil(getmetatable(back.map))
  end)

  it("carries a user closure with its upvalues into a fresh environment", function()
    local env, by_name, names = sandbox.new()
    local fn = assert(load([[
      local base, fmt = 40, string.format
      local function helper(x) return x + base end
      return function(n) return fmt("%d", helper(n)) end
    ]], "=user", "t", env))()
    local blob = assert(ser.encode(fn, { builtins = names, env = env }))
    local env2, by_name2 = sandbox.new()
    local back = assert(ser.decode(blob, { builtins = by_name2, env = env2 }))
    assert.equal("42", back(2))
    assert.equal(env2, getfenv(back))
    assert.is_table(by_name)
  end)

  it("refuses functions of the host", function()
    local env, _, names = sandbox.new()
    local bad = assert(load("local f = ... return function() return f() end", "=u", "t", env))(
      function() end)
    local blob, err = ser.encode(bad, { builtins = names, env = env })
    assert.is_nil(blob)
    assert.matches("cannot capture a function of the host", err, 1, true)
  end)

  it("refuses functions when no environment is given to decode", function()
    local env, _, names = sandbox.new()
    local fn = assert(load("return function() end", "=u", "t", env))()
    local blob = ser.encode(fn, { builtins = names, env = env })
    local v, err = ser.decode(blob)
    assert.is_nil(v)
    assert.matches("unexpected function", err, 1, true)
  end)

  it("reports truncated input", function()
    local v, err = ser.decode(ser.encode({ a = "hello" }):sub(1, 8))
    assert.is_nil(v)
    assert.matches("serialised value", err, 1, true)
  end)
end)
