-- weir._worker: the entry point of every job a worker process runs. The C
-- side (runtime/worker.c) creates a fresh state per job, loads this module
-- and calls handle(payload); the returned string is the result frame.
local ser = require("weir._ser")

local M = {}

--- Run one job (a weir._ser string) and return the serialised result.
function M.handle(payload)
  local job, err = ser.decode(payload)
  local res
  if not job then
    res = { status = "failed", kind = "internal", error = err }
  elseif job.kind == "attempt" then
    res = require("weir._attempt").run(job)
  elseif job.kind == "define" then
    res = require("weir._define").run(job)
  else
    res = { status = "failed", kind = "internal", error = "unknown job kind" }
  end
  local out, e = ser.encode(res)
  if not out then
    out = ser.encode({ status = "failed", kind = "internal", error = e })
  end
  return out
end

return M
