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
  describe("the C codec for plain data (runtime/sercodec.c)", function()
    local native = require("weir._native")
    -- opts with builtins force the Lua encoder, the reference
    local function lua_encode(v) return ser.encode(v, { builtins = {} }) end

    it("writes exactly what the Lua encoder writes", function()
      local values = {
        "", "a\0b", 0, -0.5, 1e14, 1e14 - 1, -(1e14 - 1), 2 ^ 53, 1 / 3, 0 / 0, math.huge,
        -math.huge, true, false,
        { 1, 2, 3 }, { [1] = "a", [3] = "c" }, { a = { b = { c = { "deep" } } } },
        { [1.5] = "x", [true] = "t" }, {},
      }
      for i, v in ipairs(values) do
        local c = native.ser_encode(v)
        assert.is_string(c, "value " .. i)
        assert.equal(lua_encode(v), c, "value " .. i)
      end
      assert.equal("n", native.ser_encode(nil))
    end)

    it("declines what only the Lua encoder can do", function()
      assert.is_nil(native.ser_encode({ f = print }))
      -- shared tables: copies could grow without bound (a DAG of tables)
      local shared = { 1 }
      assert.is_nil(native.ser_encode({ shared, shared }))
      local back = ser.decode(ser.encode({ shared, shared }))
      assert.equal(back[1], back[2])
      assert.is_nil(native.ser_encode(setmetatable({}, {})))
      local cyc = {}
      cyc.self = cyc
      assert.is_nil(native.ser_encode(cyc))
      assert.is_nil(native.ser_encode({ [{}] = 1 }))
      -- ...and the public encoder still handles the cycle
      local again = ser.decode(ser.encode(cyc))
      assert.equal(again, again.self)
    end)

    it("decodes the Lua encoder's output, references included", function()
      local shared = { "s" }
      local s = lua_encode({ x = shared, y = shared, n = 42, list = { "a", "b" } })
      local v, pos = native.ser_decode(s)
      assert.equal(#s + 1, pos)
      assert.equal(v.x, v.y)
      assert.equal(42, v.n)
      assert.same({ "a", "b" }, v.list)
      -- values back to back, as jobs are sent
      local two = native.ser_encode({ a = 1 }) .. native.ser_encode({ b = 2 })
      local first, p2 = native.ser_decode(two)
      local second, p3 = native.ser_decode(two, p2)
      assert.equal(1, first.a)
      assert.equal(2, second.b)
      assert.equal(#two + 1, p3)
      -- false is a value, not the fallback signal
      local f, fp = native.ser_decode("F")
      assert.is_false(f)
      assert.equal(2, fp)
    end)

    it("marks sequences with array_mt when asked", function()
      local mt = {}
      local v = native.ser_decode(native.ser_encode({ l = { 1 }, m = { k = 1 } }), 1, mt)
      assert.equal(mt, getmetatable(v.l))
      assert.is_nil(getmetatable(v.m))
    end)

    it("hands functions, builtins and metatables to the Lua decoder", function()
      assert.is_false(native.ser_decode("b5:print"))
      assert.is_false(native.ser_decode("t1;Mt2;ee"))
      assert.is_false(native.ser_decode("f1;3:abc0;"))
      -- deep nesting too: the Lua decoder judges it
      assert.is_false(native.ser_decode(string.rep("t1;", 5000)))
      local v, err = ser.decode(string.rep("t1;", 5000))
      assert.is_nil(v)
      assert.matches("serialised value", err, 1, true)
      local deep = {}
      local x = deep
      for _ = 1, 150 do x.c = {}; x = x.c end
      local back = assert(ser.decode(assert(ser.encode(deep))))
      for _ = 1, 150 do back = back.c end
      assert.same({}, back)
    end)

    it("encodes into a userdata, and decodes from a pointer", function()
      local ffi = require("ffi")
      local v = { a = 1, list = { "x", "y" } }
      local ud, n = native.ser_encode_ud(v)
      assert.equal("userdata", type(ud))
      local s = native.ser_encode(v)
      assert.equal(#s, n)
      local p = ffi.cast("const char *", ud)
      assert.equal(s, ffi.string(p, n))
      local back, pos = native.ser_decode_ptr(p, n)
      assert.same(v, back)
      assert.equal(n + 1, pos)
      -- cut short: an error, not a read past the end
      local cut, err = native.ser_decode_ptr(p, n - 2)
      assert.is_nil(cut)
      assert.matches("serialised value", err, 1, true)
      assert.has_error(function() native.ser_decode_ptr(nil, 3) end)
      assert.is_nil(native.ser_encode_ud({ f = print }))
    end)

    it("refuses forged input with an error, never a crash", function()
      local bad = {
        "", "x", "s5:abc", "s-1:", "s99999999999:", "d;", "d12", "dabc;", "t1;s1:a",
        "t1;ns1:ae", "t1;Ns1:ae", "r7;", "t1;r2;Te", "t1;s1:as1:b",
      }
      for _, s in ipairs(bad) do
        local v, err = native.ser_decode(s)
        assert.is_nil(v, s:sub(1, 20))
        assert.matches("serialised value", err, 1, true)
      end
      assert.has_error(function() native.ser_decode("n", 5) end)
    end)
  end)
end)
