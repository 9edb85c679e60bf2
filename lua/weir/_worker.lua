-- weir._worker: the entry point of every job a worker process runs. The C
-- side (runtime/worker.c) creates a fresh state per job, loads this module
-- and calls handle(payload); the returned string is the result frame.
local ser = require("weir._ser")
local pairs = pairs

local M = {}

--- Load what an attempt needs, before the job arrives (the worker calls
-- this while it waits; the state has run no user code).
function M.prepare()
  require("weir._attempt")
  require("weir._ctx")
end

--- Run one job and return the serialised result. A job is one weir._ser
-- value, or two back to back: the part shared by every attempt of a run,
-- then the attempt's own fields (which win).
function M.handle(payload)
  local job, err = ser.decode(payload)
  if job and err <= #payload then
    local own, e2 = ser.decode(payload, nil, err)
    if own then
      for k, v in pairs(own) do job[k] = v end
    else
      job, err = nil, e2
    end
  end
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
