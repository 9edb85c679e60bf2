-- weir.errors: operational errors as values.
--
-- Operational failure returns nil, err where err has a code, a message and
-- an optional cause, and prints as its message. Misuse raises instead.
local setmetatable, tostring = setmetatable, tostring

local M = {}

local mt = {}
mt.__index = mt
mt.__tostring = function(e)
  if e.cause then return e.message .. ": " .. tostring(e.cause) end
  return e.message
end

--- A new error value: code (string), message (string), cause (optional).
function M.new(code, message, cause)
  return setmetatable({ code = code, message = message, cause = cause }, mt)
end

return M
