-- weir stubs and weir schema: what editors are given matches what weir
-- offers (every ctx field and stream method declared, every schema
-- property described).
local H = require("helpers")
local json = require("weir.json")

describe("weir stubs", function()
  local stubs = require("weir.stubs")

  it("is a LuaLS ---@meta file declaring pipeline and task", function()
    assert.equal("---@meta", stubs:sub(1, 8))
    assert.matches("\nfunction pipeline%(def%) end", stubs)
    assert.matches("\nfunction task%(def%) end", stubs)
    assert.truthy(load(stubs, "=stubs", "t", {}), "the stubs are not valid Lua")
  end)

  it("declares every field of ctx", function()
    local ctx = require("weir._ctx").new({ run_id = "r", task = "t", attempt = 1, params = {} },
                                         function() end, { rows_in = 0, rows_out = 0 })
    local n = 0
    for k, v in pairs(ctx) do
      n = n + 1
      if type(v) == "function" then
        assert.matches("\nfunction Ctx%." .. k .. "%(", stubs, nil, false)
      else
        assert.matches("\n%-%-%-@field " .. k .. " ", stubs)
      end
    end
    assert.is_true(n > 10)
  end)

  it("declares every stream method", function()
    local stream = require("weir.stream")
    require("weir.connectors.file") -- adds to_csv and to_jsonl
    local methods = debug.getmetatable(stream.new_stream(function() end, nil, {})).__index
    local n = 0
    for k in pairs(methods) do
      n = n + 1
      assert.matches("\nfunction Stream:" .. k .. "%(", stubs)
    end
    assert.is_true(n >= 11)
  end)

  it("is what weir stubs prints", function()
    local code, out = H.weir(H.tmpdir(), "stubs")
    assert.equal(0, code)
    assert.equal(stubs, out)
  end)
end)

describe("weir schema", function()
  local function undescribed(node, path, out)
    if type(node) ~= "table" then return out end
    if type(node.properties) == "table" then
      for k, v in pairs(node.properties) do
        if type(v) ~= "table" or type(v.description) ~= "string" or v.description == "" then
          out[#out + 1] = path .. "/properties/" .. k
        end
      end
    end
    for k, v in pairs(node) do undescribed(v, path .. "/" .. tostring(k), out) end
    return out
  end

  for _, which in ipairs({ "pipeline", "config" }) do
    it("prints the " .. which .. " schema, every property described", function()
      local code, out = H.weir(H.tmpdir(), "schema " .. which)
      assert.equal(0, code)
      assert.equal(H.read(H.src .. "/lua/weir/schemas/" .. which .. ".schema.json"), out)
      local doc = json.decode(out)
      assert.equal("https://json-schema.org/draft/2020-12/schema", doc["$schema"])
      assert.same({}, undescribed(doc, "", {}))
    end)
  end

  it("refuses anything else", function()
    local code, _, err = H.weir(H.tmpdir(), "schema nope")
    assert.equal(2, code)
    assert.matches("usage: weir schema pipeline|config", err, 1, true)
  end)
end)
