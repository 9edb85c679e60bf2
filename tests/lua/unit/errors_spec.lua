-- weir.errors and weir._ffi.check: the one way a boundary status becomes
-- an error value, and what the attempt reads to decide on retries.
local errors = require("weir.errors")
local F = require("weir._ffi")

describe("error values", function()
  it("come from a status through check, named from the cdef's enum", function()
    assert.is_true(F.check(F.C.WEIR_OK))
    F.ffi.copy(F.errbuf, "pool p: all 4 connections are in use")
    local ok, err = F.check(F.C.WEIR_ELIMIT, "postgres wh")
    assert.is_nil(ok)
    assert.is_true(errors.is(err))
    assert.equal("limit", err.code)
    assert.equal("postgres wh: pool p: all 4 connections are in use", tostring(err))
    local names = {}
    for name, v in require("weir._cdef"):gmatch("WEIR_(E%u+)%s*=%s*(%-%d+)") do
      local _, e = F.check(tonumber(v))
      names[#names + 1] = e.code
      assert.is_nil(e.code:match("^%-?%d+$"), name .. " has no name")
    end
    assert.equal(11, #names)
  end)

  it("say permanent only when transient is false on one of them", function()
    local e = errors.new("sql", "postgres wh: [42601] syntax error")
    assert.is_false(errors.permanent(e))          -- not classified: retried
    e.transient = false
    assert.is_true(errors.permanent(e))
    e.transient = true
    assert.is_false(errors.permanent(e))
    assert.is_false(errors.permanent({ transient = false })) -- not an error value
    assert.is_false(errors.permanent("[42601] syntax error"))
  end)

  it("keep their shared metatable out of reach", function()
    local e = errors.new("io", "x", "cause")
    assert.equal(false, getmetatable(e))
    assert.equal("x: cause", tostring(e))
  end)
end)
