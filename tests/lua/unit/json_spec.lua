-- Specs for weir.json: structure-keeping decode, deterministic encode, and
-- errors that say what went wrong and where.
local json = require "weir.json"

local function array(...)
  return setmetatable({ ... }, json.array_mt)
end

describe("weir.json", function()
  describe("null", function()
    it("is the one NULL: weir.db.NULL, what ctx.NULL is", function()
      assert.are.equal("userdata", type(json.null))
      assert.are.equal(require("weir.connectors.sqlite").NULL, json.null)
      assert.are.equal(require("weir._native").NULL, json.null)
      local ctx, close = require("weir._ctx").new({ task = "t" }, function() end, {})
      assert.are.equal(ctx.NULL, json.null)
      close()
    end)

    it("has no metatable to change", function()
      assert.is_nil(getmetatable(json.null))
      assert.has_error(function() setmetatable(json.null, {}) end)
    end)

    it("is read-only", function()
      assert.has_error(function() json.null.x = 1 end)
      assert.has_error(function() return json.null.x end)
    end)

    it("encodes and decodes as null in both JSON codecs", function()
      local native = require("weir._native")
      assert.are.equal("null", json.encode(json.null))
      assert.are.equal("[null]", native.json_encode({ json.null }))
      assert.are.equal(json.null, native.json_decode("[null]")[1])
      assert.are.equal("null", json.kind(json.null))
    end)
  end)

  describe("decode", function()
    it("reads scalars", function()
      assert.are.equal(1, json.decode("1"))
      assert.are.equal(-12.5, json.decode("-12.5"))
      assert.are.equal(1e3, json.decode("1E+3"))
      assert.are.equal(0.25, json.decode("25e-2"))
      assert.are.equal("hi", json.decode('"hi"'))
      assert.are.equal(true, json.decode("true"))
      assert.are.equal(false, json.decode("false"))
      assert.are.equal(json.null, json.decode("null"))
    end)

    it("marks arrays, even empty ones, with array_mt", function()
      local v = json.decode('{"a": [], "b": [1, [2]]}')
      assert.are.equal(json.array_mt, getmetatable(v.a))
      assert.are.equal(json.array_mt, getmetatable(v.b))
      assert.are.equal(json.array_mt, getmetatable(v.b[2]))
      assert.are.equal(2, v.b[2][1])
    end)

    it("returns objects as plain tables without a metatable", function()
      local v = json.decode('{"a": {}, "b": {"c": 1}}')
      assert.is_nil(getmetatable(v))
      assert.is_nil(getmetatable(v.a))
      assert.is_nil(next(v.a))
      assert.are.equal(1, v.b.c)
    end)

    it("keeps null slots in arrays and objects", function()
      local v = json.decode('{"a": [1, null, 3], "b": null}')
      assert.are.equal(json.null, v.a[2])
      assert.are.equal(3, v.a[3])
      assert.are.equal(json.null, v.b)
    end)

    it("decodes every escape", function()
      assert.are.equal("\"\\/\b\f\n\r\t", json.decode('"\\"\\\\\\/\\b\\f\\n\\r\\t"'))
      assert.are.equal("A\0B", json.decode('"\\u0041\\u0000B"'))
      assert.are.equal("é€", json.decode('"\\u00e9\\u20AC"'))
    end)

    it("joins surrogate pairs into one UTF-8 character", function()
      assert.are.equal("😀", json.decode('"\\ud83d\\ude00"'))
      assert.are.equal("x𝄞y", json.decode('"x\\uD834\\uDD1Ey"'))
    end)

    it("passes UTF-8 text through", function()
      assert.are.equal("ármányos 😀", json.decode('"ármányos 😀"'))
    end)

    it("skips whitespace and a byte order mark", function()
      assert.are.same({ a = 1 }, json.decode('\239\187\191 \t\r\n{ "a" :\n 1 }\n'))
    end)

    it("lets the last duplicate key win", function()
      assert.are.equal(2, json.decode('{"a": 1, "a": 2}').a)
    end)

    it("decodes a multi-megabyte document", function()
      local parts = {}
      for i = 1, 20000 do
        parts[i] = ('{"id": %d, "text": "%s\\n", "tags": ["a", "b"], "x": null}')
          :format(i, string.rep("z", 50))
      end
      local text = "[" .. table.concat(parts, ",") .. "]"
      assert.is_true(#text > 1500000)
      local v = assert(json.decode(text))
      assert.are.equal(20000, #v)
      assert.are.equal(string.rep("z", 50) .. "\n", v[20000].text)
      assert.are.equal(json.null, v[1].x)
    end)

    it("says what is wrong and where", function()
      local v, err = json.decode('{\n  "a": 1,\n  "b" 2\n}')
      assert.is_nil(v)
      assert.are.equal("json: expected ':' at line 3 column 7", err)
    end)

    local bad = {
      { "", "json: unexpected end of input at line 1 column 1" },
      { "[1, 2", "json: expected ',' or ']' at line 1 column 6" },
      { "[1, 2,]", "json: unexpected ']' at line 1 column 7" },
      { '{"a": 1,}', "json: expected string key at line 1 column 9" },
      { "{'a': 1}", "json: expected string key at line 1 column 2" },
      { '{"a": 1 "b": 2}', "json: expected ',' or '}' at line 1 column 9" },
      { "01", "json: invalid number (leading zero) at line 1 column 1" },
      { "1.", "json: invalid number at line 1 column 1" },
      { "-", "json: invalid number at line 1 column 1" },
      { ".5", "json: unexpected '.' at line 1 column 1" },
      { "1e", "json: invalid number at line 1 column 1" },
      { "NaN", "json: unexpected 'N' at line 1 column 1" },
      { "tru", "json: unexpected 't' at line 1 column 1" },
      { '"abc', "json: unterminated string at line 1 column 1" },
      { '"a\\qb"', "json: invalid escape 'q' at line 1 column 3" },
      { '"a\tb"', "json: control character in string at line 1 column 3" },
      { '"\\u12"', "json: invalid unicode escape at line 1 column 2" },
      { '"\\ud800"', "json: lone surrogate in unicode escape at line 1 column 2" },
      { '"\\udc00"', "json: lone surrogate in unicode escape at line 1 column 2" },
      { '"\255"', "json: invalid utf-8 at line 1 column 2" },
      { '"\192\128"', "json: invalid utf-8 at line 1 column 2" },
      { "[1] [2]", "json: unexpected '[' after value at line 1 column 5" },
    }
    for _, case in ipairs(bad) do
      it("rejects " .. string.format("%q", case[1]), function()
        local v, err = json.decode(case[1])
        assert.is_nil(v)
        assert.are.equal(case[2], err)
      end)
    end

    it("limits nesting to 512 by default", function()
      assert.is_table(json.decode(string.rep("[", 512) .. string.rep("]", 512)))
      local v, err = json.decode(string.rep("[", 513) .. string.rep("]", 513))
      assert.is_nil(v)
      assert.are.equal("json: nesting deeper than 512 at line 1 column 513", err)
    end)

    it("takes a nesting limit", function()
      local v, err = json.decode('{"a": {"b": 1}}', { max_depth = 1 })
      assert.is_nil(v)
      assert.matches("nesting deeper than 1", err, 1, true)
    end)

    it("raises on misuse", function()
      assert.has_error(function() json.decode(nil) end,
                       "json.decode: bad 'text' (string expected, got nil)")
      assert.has_error(function() json.decode("1", 5) end)
    end)
  end)

  describe("encode", function()
    it("writes scalars", function()
      assert.are.equal("1", json.encode(1))
      assert.are.equal("-7", json.encode(-7))
      assert.are.equal("1.5", json.encode(1.5))
      assert.are.equal('"hi"', json.encode("hi"))
      assert.are.equal("true", json.encode(true))
      assert.are.equal("null", json.encode(json.null))
      assert.are.equal("null", json.encode(nil))
    end)

    it("writes integers without exponent or decimals below 2^53", function()
      assert.are.equal("1000000", json.encode(1e6))
      assert.are.equal("9007199254740991", json.encode(2 ^ 53 - 1))
      assert.are.equal("-9007199254740991", json.encode(-(2 ^ 53 - 1)))
      assert.are.equal("3", json.encode(3.0))
    end)

    it("writes other numbers so that they read back exactly", function()
      for _, x in ipairs({ 0.1, 1 / 3, 2 ^ 53, 1e300, -2.5e-7, 5e-324, 123.456 }) do
        assert.are.equal(x, json.decode(json.encode(x)))
      end
      assert.are.equal("0.1", json.encode(0.1))
    end)

    it("refuses NaN and infinities", function()
      local v, err = json.encode({ x = 0 / 0 })
      assert.is_nil(v)
      assert.are.equal("json: cannot encode number NaN at value.x", err)
      assert.are.same({ nil, "json: cannot encode number inf at value" },
                      { json.encode(math.huge) })
      assert.are.same({ nil, "json: cannot encode number -inf at value[1]" },
                      { json.encode({ -math.huge }) })
    end)

    it("escapes strings", function()
      assert.are.equal('"a\\"b\\\\c\\n\\t\\u0001\\u001f/é"',
                       json.encode("a\"b\\c\n\t\1\31/é"))
    end)

    it("refuses strings that are not UTF-8", function()
      local v, err = json.encode({ s = "\255" })
      assert.is_nil(v)
      assert.are.equal("json: invalid utf-8 in string at value.s", err)
    end)

    it("sorts object keys", function()
      assert.are.equal('{"a":1,"b":{"x":true,"y":false},"c":[]}',
                       json.encode({ c = array(), b = { y = false, x = true }, a = 1 }))
    end)

    it("writes tables with array_mt or keys 1..n as arrays", function()
      assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
      assert.are.equal('["a"]', json.encode(array("a")))
      assert.are.equal("[]", json.encode(array()))
      assert.are.equal("[1,null,3]", json.encode(array(1, nil, 3)))
    end)

    it("writes an empty table without array_mt as {}", function()
      assert.are.equal("{}", json.encode({}))
    end)

    it("round-trips structure", function()
      local text = '{"a":[],"b":{},"c":[null,1,"x",{"d":[[]]}],"e":null}'
      assert.are.equal(text, json.encode(json.decode(text)))
    end)

    it("refuses number keys in tables that are not sequences", function()
      local v, err = json.encode({ [1] = "a", [3] = "c" })
      assert.is_nil(v)
      assert.matches("^json: object key must be a string, got number %d at value%[%d%]$", err)
      v, err = json.encode({ a = { [1] = 1, x = 2 } })
      assert.is_nil(v)
      assert.are.equal("json: object key must be a string, got number 1 at value.a[1]", err)
    end)

    it("refuses arrays with other keys", function()
      local t = array(1, 2)
      t.x = 1
      local v, err = json.encode(t)
      assert.is_nil(v)
      assert.are.equal("json: array has a non-index key at value", err)
    end)

    it("names the path of a value it cannot encode", function()
      local v, err = json.encode({ rows = { { f = 1 }, { f = print } } }, { name = "output" })
      assert.is_nil(v)
      assert.are.equal("json: cannot encode value of type function at output.rows[2].f", err)
    end)

    it("quotes odd keys in paths", function()
      local _, err = json.encode({ ["a b"] = { coroutine.create(print) } })
      assert.are.equal('json: cannot encode value of type thread at value["a b"][1]', err)
    end)

    it("detects cycles", function()
      local t = {}
      t.a = { b = t }
      local v, err = json.encode(t, { name = "output" })
      assert.is_nil(v)
      assert.are.equal("json: cycle at output.a.b", err)
    end)

    it("allows the same table twice when it is not a cycle", function()
      local shared = { 1 }
      assert.are.equal('{"a":[1],"b":[1]}', json.encode({ a = shared, b = shared }))
    end)

    it("limits depth to 64 by default", function()
      local root = {}
      local t = root
      for _ = 1, 63 do
        t.x = {}
        t = t.x
      end
      assert.is_string(json.encode(root))
      t.x = {}
      local v, err = json.encode(root)
      assert.is_nil(v)
      assert.matches("^json: nesting deeper than 64 at value%.x%.x", err)
      assert.is_nil((json.encode({ a = { b = {} } }, { max_depth = 2 })))
    end)

    it("limits the output size", function()
      local big = { string.rep("x", 1048576) }
      local v, err = json.encode(big, { max_bytes = 1048576 })
      assert.is_nil(v)
      assert.are.equal("json: output exceeds 1048576 bytes", err)
      assert.are.equal("[1]", json.encode({ 1 }, { max_bytes = 3 }))
      assert.is_nil((json.encode({ 1 }, { max_bytes = 2 })))
    end)

    it("never calls metamethods", function()
      local function boom() error("metamethod called") end
      local t = setmetatable({ a = 1 }, {
        __index = boom, __newindex = boom, __pairs = boom, __len = boom,
        __tostring = boom, __eq = boom, __lt = boom, __le = boom, __call = boom,
      })
      assert.are.equal('{"a":1}', json.encode(t))
      assert.are.equal('{"k":{"a":1}}', json.encode({ k = t }))
    end)

    it("raises on misuse", function()
      assert.has_error(function() json.encode(1, "x") end,
                       "json.encode: bad 'opts' (table expected, got string)")
      assert.has_error(function() json.encode(1, { max_depth = 0 }) end)
      assert.has_error(function() json.encode(1, { name = 1 }) end)
    end)
  end)

  describe("kind", function()
    it("classifies values as JSON sees them", function()
      assert.are.equal("null", json.kind(json.null))
      assert.are.equal("null", json.kind(nil))
      assert.are.equal("object", json.kind({}))
      assert.are.same({ "array", 0 }, { json.kind(array()) })
      assert.are.same({ "array", 2 }, { json.kind({ "a", "b" }) })
      assert.are.equal("object", json.kind({ a = 1 }))
      assert.are.equal("function", json.kind(print))
    end)

    it("measures arrays by their largest index and flags defects", function()
      assert.are.same({ "array", 3 }, { json.kind(array(1, nil, 3)) })
      local t = array(1)
      t.x = true
      assert.are.same({ "array", 1, "array has a non-index key" }, { json.kind(t) })
      local sparse = array()
      sparse[1000] = 1
      assert.are.same({ "array", 1000, "array is too sparse" }, { json.kind(sparse) })
      assert.are.equal("object", json.kind({ 1, 2, [4] = 4 }))
    end)
  end)
end)
