-- The FFI boundary: every function the generated declarations name must
-- resolve in the running binary (a libweir built without its exports
-- fails here, loudly), the ABI version must match, and the binary and
-- libweir export no weir_ symbol the declarations do not name.
local F = require("weir._ffi")
local cdef = require("weir._cdef")
local H = require("helpers")

-- The weir_ symbols an `nm -D --defined-only` listing holds that the
-- generated declarations do not declare as functions.
local function undeclared(nm_output)
  local declared = {}
  for name in cdef:gmatch("([%w_]+)%s*%(") do declared[name] = true end
  local out = {}
  for sym in nm_output:gmatch("%x+ %a ([%w_@.]+)") do
    local name = sym:match("^[^@]+")
    if name:match("^weir_") and not declared[name] then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

local function exports(path)
  local text = H.output("nm -D --defined-only " .. H.q(path) .. " 2>&1")
  assert.matches("weir_ffi_abi_version", text, path .. ": " .. text)
  return text
end

describe("the FFI boundary", function()
  it("declares every exported function from the headers' cdef regions", function()
    local names = {}
    for name in cdef:gmatch("([%w_]+)%s*%(") do
      if name:match("^weir_ffi_") then names[#names + 1] = name end
    end
    assert.is_true(#names > 40, "only " .. #names .. " functions declared")
    for _, name in ipairs(names) do
      local ok, fn = pcall(function() return F.C[name] end)
      assert.is_true(ok, name .. " does not resolve")
      assert.is_not_nil(fn)
    end
  end)

  it("checks the ABI version", function()
    assert.equal(F.C.WEIR_ABI_VERSION, F.C.weir_ffi_abi_version())
  end)

  it("exports from the binary and libweir only the functions it declares", function()
    assert.same({}, undeclared(exports(H.bin)))
    local lib = os.getenv("WEIR_LIB") or (H.bin:gsub("weir$", "libweir.so"))
    assert.same({}, undeclared(exports(lib)))
  end)

  it("finds a weir_ export that is not declared", function()
    assert.same({ "weir_pg_lua_open", "weir_table" }, undeclared(
      "0000000000012340 T weir_ffi_abi_version\n0000000000012350 T weir_pg_lua_open\n"
      .. "0000000000012360 T socket\n0000000000084740 D weir_table\n"))
    -- and in a real shared object, when a C compiler is at hand
    if os.execute("command -v cc >/dev/null 2>&1") ~= 0 then return end
    local dir = H.tmpdir()
    H.write(dir .. "/x.c", "int weir_ffi_abi_version(void) { return 0; }\n"
                           .. "int weir_internal_thing(void) { return 1; }\n")
    assert.equal(0, os.execute("cc -shared -fPIC -o " .. H.q(dir .. "/x.so") .. " " .. H.q(dir .. "/x.c")))
    assert.same({ "weir_internal_thing" }, undeclared(exports(dir .. "/x.so")))
    H.cleanup(dir)
  end)
end)
