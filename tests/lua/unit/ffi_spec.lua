-- The FFI boundary: every function the generated declarations name must
-- resolve in the running binary (a libweir built without its exports
-- fails here, loudly), and the ABI version must match.
local F = require("weir._ffi")
local cdef = require("weir._cdef")

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
end)
