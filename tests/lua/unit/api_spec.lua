-- weir.api's tables: the roles matrix of docs/api.md is the route table's
-- (both ways), the OpenAPI document names every route and nothing else,
-- and the router's path decoding refuses what no id or name may hold.
-- Over real HTTP: tests/e2e/serve_spec.lua.
local api = require("weir.api")
local auth = require("weir.auth")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("weir.api", function()
  it("has the roles matrix of docs/api.md, row for row", function()
    local doc = read((os.getenv("WEIR_SRC") or ".") .. "/docs/api.md")
    local rows = {}
    for method, path, cells in doc:gmatch("\n| (%u+) | `([^`]+)` |([^\n]+)") do
      local list = {}
      for c in cells:gmatch("%s*([%w]+)%s*|") do list[#list + 1] = c end
      rows[method .. " " .. path] = list
    end
    local n = 0
    for _, r in ipairs(api.ROUTES) do
      local key = r[1] .. " " .. r[2]
      local cells = rows[key]
      assert.truthy(cells, "docs/api.md has no row for " .. key)
      for i, role in ipairs(auth.ROLES) do
        local want = r[3] == nil and "public" or (auth.role_allows(role, r[3]) and "yes" or "no")
        assert.equal(want, cells[i], key .. " for " .. role)
      end
      rows[key] = nil
      n = n + 1
    end
    assert.is_nil(next(rows), "docs/api.md lists a route the server does not have")
    assert.is_true(n > 10)
  end)

  it("describes every route in its OpenAPI document, and only those", function()
    local doc = api.new({ settings = { cors_origins = {}, trusted_proxies = {},
                                       rate_limit = { per_address = { rate = 1, burst = 1 },
                                                      per_principal = { rate = 1, burst = 1 } } } })
                   :openapi()
    assert.equal("3.1.0", doc.openapi)
    local seen = 0
    for _, r in ipairs(api.ROUTES) do
      local op = doc.paths[r[2]] and doc.paths[r[2]][r[1]:lower()]
      assert.truthy(op, r[1] .. " " .. r[2])
      assert.equal(r[3] or "public", op["x-weir-role"])
      seen = seen + 1
    end
    local total = 0
    for _, ops in pairs(doc.paths) do for _ in pairs(ops) do total = total + 1 end end
    assert.equal(seen, total)
  end)

  it("decodes query strings", function()
    assert.same({ a = "1 2", ["b c"] = "/x", d = "" }, api.query("a=1+2&b%20c=%2Fx&d"))
  end)
end)
