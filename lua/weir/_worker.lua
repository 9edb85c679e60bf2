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

--- Run one job and return the serialised result. A job is one or more
-- weir._ser values back to back, merged in order (later fields win): the
-- part every attempt of a run shares, the task's, the attempt's own.
function M.handle(payload)
  local job, err = ser.decode(payload)
  while job and err <= #payload do
    local more, e2 = ser.decode(payload, nil, err)
    if not more then job, err = nil, e2; break end
    for k, v in pairs(more) do job[k] = v end
    err = e2
  end
  local res
  if not job then
    res = { status = "failed", kind = "internal", error = err }
  elseif job.kind == "attempt" then
    res = require("weir._attempt").run(job)
  elseif job.kind == "define" then
    res = require("weir._define").run(job)
  elseif job.kind == "session" then
    res = require("weir._session").run(job)
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
