-- weir.color: colour for what the command line prints on a terminal:
-- states and errors. Never with NO_COLOR set (and not empty), TERM=dumb,
-- or off a terminal (https://no-color.org).
local M = {}

local CODES = {
  success = "32", failed = "31", upstream_failed = "31", error = "1;31", cancelled = "33",
  up_for_retry = "33", interrupted = "33", running = "36", queued = "2", skipped = "2",
  lost = "33", requeued = "2", warning = "33",
}

--- Whether output to file descriptor fd gets colour.
function M.enabled(fd)
  local nc = os.getenv("NO_COLOR")
  if nc and nc ~= "" then return false end
  if os.getenv("TERM") == "dumb" then return false end
  return require("weir._ffi").C.weir_ffi_isatty(fd) == 1
end

--- A painter for fd: paint(kind, text) wraps text in kind's colour (a
-- state, "error" or "warning") when fd gets colour; text as is otherwise.
function M.painter(fd)
  if not M.enabled(fd) then return function(_, text) return text end end
  return function(kind, text)
    local c = CODES[kind]
    if not c then return text end
    return "\27[" .. c .. "m" .. text .. "\27[0m"
  end
end

return M
