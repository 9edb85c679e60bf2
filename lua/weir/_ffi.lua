-- weir._ffi: the one place the FFI declarations are loaded.
--
-- The declarations are generated from the C headers at build time
-- (weir._cdef), so they cannot drift; the ABI version is checked here so a
-- mismatched libweir is refused at load time.
local ffi = require("ffi")
local errors = require("weir.errors")

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

local OK = C.WEIR_OK
local names = {
  [C.WEIR_EINVAL] = "invalid", [C.WEIR_ENOMEM] = "nomem", [C.WEIR_EIO] = "io",
  [C.WEIR_ENOENT] = "notfound", [C.WEIR_EPERM] = "denied", [C.WEIR_ELIMIT] = "limit",
  [C.WEIR_EPARSE] = "parse", [C.WEIR_ESQL] = "sql", [C.WEIR_EAGAIN] = "again",
  [C.WEIR_ECLOSED] = "closed", [C.WEIR_ETIMEOUT] = "timeout",
}

--- The error text a boundary call left in the shared buffer.
function M.errmsg()
  return ffi.string(errbuf)
end

--- The name of a status code ("parse", "sql", ...).
function M.code_name(rc)
  return names[rc] or tostring(rc)
end

--- The one way a boundary status becomes an error: true for WEIR_OK, else
-- nil and an error object whose code is the status's name and whose
-- message is the text the call left in the shared buffer (after "what: "
-- when what is given).
function M.check(rc, what)
  if rc == OK then return true end
  local msg = ffi.string(errbuf)
  return nil, errors.new(names[rc] or tostring(rc), what and (what .. ": " .. msg) or msg)
end

return M
