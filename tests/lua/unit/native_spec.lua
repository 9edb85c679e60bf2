-- The classic-API boundary: weir._native holds exactly what the headers'
-- weir:native regions list (one function a line, "name(args) -> results";
-- redis.command for the functions of the redis subtable; NULL is a value),
-- as the FFI functions are exactly what the cdef regions declare.
local H = require("helpers")

-- The names a header text lists.
local function listed_in(text, out)
  for region in text:gmatch("weir:native:begin(.-)weir:native:end") do
    for line in region:gmatch("[^\n]+") do
      local name = line:match("^%s*%* ([%a_][%w_.]*)[%(%s]")
      if name then out[name] = true end
    end
  end
  return out
end

-- The names a registered table holds (subtables as "sub.name").
local function registered_in(t, prefix, out)
  for k, v in pairs(t) do
    if type(v) == "table" then registered_in(v, k .. ".", out) else out[prefix .. k] = true end
  end
  return out
end

-- Names registered and not listed, and listed and not registered.
local function mismatch(listed, registered)
  local extra, missing = {}, {}
  for k in pairs(registered) do if not listed[k] then extra[#extra + 1] = k end end
  for k in pairs(listed) do if not registered[k] then missing[#missing + 1] = k end end
  table.sort(extra); table.sort(missing)
  return extra, missing
end

local function listings()
  local out = {}
  local find = "ls " .. H.q(H.src .. "/runtime/include/weir") .. "/*.h "
               .. H.q(H.src .. "/connectors/include/weir") .. "/*.h"
  for path in H.output(find):gmatch("[^\n]+") do listed_in(H.read(path), out) end
  return out
end

describe("the classic-API listing", function()
  it("names every function weir._native registers, and nothing else", function()
    local listed = listings()
    local registered = registered_in(require("weir._native"), "", {})
    assert.is_true(registered.pg_exec and registered["redis.command"] and registered.NULL)
    local extra, missing = mismatch(listed, registered)
    assert.same({}, extra, "registered but not listed: " .. table.concat(extra, ", "))
    assert.same({}, missing, "listed but not registered: " .. table.concat(missing, ", "))
  end)

  it("fails on a function added without a listing, and on a stale listing", function()
    local listed = listings()
    local registered = registered_in(require("weir._native"), "", {})
    registered.pg_new_thing = true
    registered["redis.extra"] = true
    local extra, missing = mismatch(listed, registered)
    assert.same({ "pg_new_thing", "redis.extra" }, extra)
    assert.same({}, missing)
    listed = listed_in(" * weir:native:begin\n * gone(x) -> y\n *   gone2(not a name line)\n"
                       .. " * weir:native:end\n", listed)
    extra, missing = mismatch(listed, registered_in(require("weir._native"), "", {}))
    assert.same({}, extra)
    assert.same({ "gone" }, missing)
  end)
end)
