-- weir.errors: operational errors as values.
--
-- Operational failure returns nil, err (or raises err where nil means
-- something else, as the end of a stream) where err has a code (the name
-- of a C status: "io", "sql"...), a message, and where they apply
-- transient (whether a retry can cure it: a lost connection can, a syntax
-- error cannot), sqlstate (PostgreSQL) and a cause. It prints as its
-- message. Misuse raises a string instead.
local setmetatable, tostring, rawget = setmetatable, tostring, rawget
-- tasks get these objects (pcall): getmetatable gives them false, so the
-- metatable every error shares is out of their reach; this module reads it
-- raw
local getmetatable = debug.getmetatable

local M = {}

local mt = {}
mt.__index = mt
mt.__tostring = function(e)
  if e.cause then return e.message .. ": " .. tostring(e.cause) end
  return e.message
end
mt.__metatable = false
--- The metatable of error objects (C builds error replies with it).
M.mt = mt

--- A new error value: code (string), message (string), cause (optional).
function M.new(code, message, cause)
  return setmetatable({ code = code, message = message, cause = cause }, mt)
end

--- True when v is an error value.
function M.is(v)
  return getmetatable(v) == mt
end

--- True when e is an error value that says no retry can cure it: the
-- attempt that raised it fails its task at once. Errors nobody classified
-- (transient absent, or not an error value) keep the task's retries.
function M.permanent(e)
  return getmetatable(e) == mt and rawget(e, "transient") == false
end

return M
