-- weir._ffi: the one place the FFI declarations are loaded.
--
-- The declarations are generated from the C headers at build time
-- (weir._cdef), so they cannot drift; the ABI version is checked here so a
-- mismatched libweir is refused at load time.
local ffi = require("ffi")

local M = {}

ffi.cdef(require("weir._cdef"))

local function resolve()
  local ok = pcall(function() return ffi.C.weir_ffi_abi_version end)
  if ok then return ffi.C end
  return ffi.load("weir")
end

local C = resolve()
M.C = C
M.ffi = ffi

local abi = C.weir_ffi_abi_version()
if abi ~= C.WEIR_ABI_VERSION then
  error(string.format("weir: libweir ABI %d does not match the Lua library's %d",
                      abi, tonumber(C.WEIR_ABI_VERSION)))
end

local ERRLEN = 1024
local errbuf = ffi.new("char[?]", ERRLEN)
M.errbuf, M.errlen = errbuf, ERRLEN

local names = {
  [0] = "ok", [-1] = "invalid", [-2] = "nomem", [-3] = "io", [-4] = "notfound",
  [-5] = "denied", [-6] = "limit", [-7] = "parse", [-8] = "sql", [-9] = "again",
  [-10] = "closed", [-11] = "timeout",
}

--- The error text a boundary call left in the shared buffer.
function M.errmsg()
  return ffi.string(errbuf)
end

--- The name of a status code ("parse", "sql", ...).
function M.code_name(rc)
  return names[rc] or tostring(rc)
end

return M
