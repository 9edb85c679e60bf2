-- weir.breaker: the circuit breaker of each connection, shared by every
-- process on the host through a table in shared memory (runtime/breaker.c:
-- a file in WEIR_HOME mapped by supervisors and `weir health`, handed to
-- workers as a read-only descriptor: their changes go through the
-- supervisor).
--
-- Every connector call asks allow(cfg) first and reports record(cfg, ok)
-- after. An open breaker fails fast, naming the connection and when it
-- will be tried again; the error is retryable, so task retries and their
-- backoff compose with it. A process that has no table (a trusted script
-- that never opened one) runs its calls unguarded.
local F = require("weir._ffi")
local ffi, C = F.ffi, F.C
local format, tostring = string.format, tostring

local M = {}

-- a worker maps the table in C at start (fd 5), before any Lua state
local attached = C.weir_ffi_breaker_attached() == 1
local slots = {}            -- connection name -> slot
local cfgbuf = ffi.new("weir_breaker_cfg")
local slot_out = ffi.new("int32_t[1]")
local state_out = ffi.new("int32_t[1]")
local retry_out = ffi.new("double[1]")
local info = ffi.new("weir_breaker_info")

M.STATES = { [C.WEIR_BREAKER_CLOSED] = "closed", [C.WEIR_BREAKER_OPEN] = "open",
             [C.WEIR_BREAKER_HALF_OPEN] = "half_open" }

--- Open (creating if needed) the shared table at path; returns its
-- descriptor (for the workers), or nil, err.
function M.open(path)
  local fd = ffi.new("int32_t[1]")
  if C.weir_ffi_breaker_open(path, fd, F.errbuf, F.errlen) ~= 0 then
    return nil, "breakers: " .. F.errmsg()
  end
  attached, slots = true, {}
  return fd[0]
end

--- A read-only descriptor of the table open() mapped, for workers: they
-- map it read-only and ask the supervisor for every change (ADR 13).
-- Returns it, or nil, err.
function M.reader()
  local fd = ffi.new("int32_t[1]")
  if C.weir_ffi_breaker_reader(fd, F.errbuf, F.errlen) ~= 0 then
    return nil, "breakers: " .. F.errmsg()
  end
  return fd[0]
end

--- Map the table from an inherited descriptor (workers: fd 5).
function M.attach(fd)
  if C.weir_ffi_breaker_attach(fd, F.errbuf, F.errlen) ~= 0 then
    return nil, "breakers: " .. F.errmsg()
  end
  attached, slots = true, {}
  return true
end

--- Is a table mapped in this process?
function M.attached() return attached end

local function slot(cfg)
  local s = slots[cfg.name]
  if s then return s end
  local b = cfg.breaker or {}
  cfgbuf.threshold = b.threshold or 5
  cfgbuf.half_open_probes = b.half_open_probes or 1
  cfgbuf.window_ms = b.window_ms or 30000
  cfgbuf.open_ms = b.open_ms or 10000
  if C.weir_ffi_breaker_slot(cfg.name, cfgbuf, slot_out, F.errbuf, F.errlen) ~= 0 then
    error(format("%s %s: breaker: %s", cfg.type or "connection", cfg.name, F.errmsg()), 0)
  end
  s = slot_out[0]
  slots[cfg.name] = s
  return s
end

--- Raise a retryable error when cfg's breaker is open.
function M.allow(cfg)
  if not attached then return end
  if C.weir_ffi_breaker_allow(slot(cfg), state_out, retry_out) ~= 0 then
    local msg = format("%s %s: circuit breaker open after repeated failures; next try in %.1f s",
                       cfg.type or "connection", cfg.name, retry_out[0] / 1000)
    local e = require("weir.errors").new("again", msg)
    e.transient = true
    error(e, 0)
  end
end

--- Report the outcome of an allowed call.
function M.record(cfg, ok)
  if not attached then return end
  C.weir_ffi_breaker_record(slot(cfg), ok and 1 or 0)
end

--- { state = "closed"|"open"|"half_open", failures, retry_in_ms, opened }
-- for `weir health`, or nil when no table is mapped.
function M.info(cfg)
  if not attached then return nil end
  C.weir_ffi_breaker_info(slot(cfg), info)
  return { state = M.STATES[info.state] or tostring(info.state), failures = info.failures,
           retry_in_ms = info.retry_in_ms, opened = tonumber(info.opened_count) }
end

return M
