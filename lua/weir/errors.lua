-- weir.errors: operational errors as values, and the retry verdict of the
-- last connector error.
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

-- Connectors note each error they raise with whether a retry can cure it
-- (a lost connection can; a syntax error cannot). When an attempt fails
-- with that very message, the engine learns not to retry the hopeless.
local last_msg, last_retryable

--- Note that msg is being raised; retryable says if a retry can help.
function M.note(msg, retryable)
  last_msg, last_retryable = msg, retryable and true or false
end

--- false when msg is the last noted error and it is not retryable; true
-- otherwise (errors nobody classified keep the task's retries).
function M.retryable(msg)
  if msg ~= nil and msg == last_msg then return last_retryable end
  return true
end

return M
