-- weir.executor: the Lua face of the C executor (runtime/exec.c).
--
-- A pool of worker processes. send() queues a job on a slot, poll() returns
-- the events that arrived (results copied into Lua strings, worker exits,
-- signals). Scheduling policy lives in weir.engine; this module only wraps
-- the primitive and owns its lifetime (ffi.gc at birth, close() is safe
-- twice).
local F = require("weir._ffi")
local ffi, C = F.ffi, F.C
local check = F.check
-- ser_decode_ptr reads any cdata as a pointer (C cannot tell cdata types
-- apart): only ever give it the executor's own const char *
local ser_decode_ptr = require("weir._native").ser_decode_ptr
local char_ptr = ffi.typeof("const char *")
local function decode_ptr(p, n)
  assert(ffi.istype(char_ptr, p), "executor: result data is not a const char *")
  return ser_decode_ptr(p, n)
end

local M = {}
local Exec = {}
Exec.__index = Exec

local MAX_EVENTS = 1024

--- Start a pool. opts: workers, roots (array of directories), deny
-- (directories inside roots that stay out of reach: weir's home), protect
-- (absolute paths of files workers may not write: the pipeline file),
-- hide (files they may neither read nor write: weir.yaml, its secret
-- files), user,
-- rlimit_as (bytes), exe, endpoints ("IP:PORT" strings workers may
-- connect to), shared_fd (given to every worker as fd 5: the breaker
-- table, read-only), breakers (the names of the breakers workers may
-- change through the supervisor), preload (C.WEIR_PRELOAD_* bits: libraries workers load before
-- their seccomp filter), temps (a folder, WEIR_HOME/temps: where the
-- temporary files workers create are journaled, for sweep_temps after a
-- kill). Returns the pool or nil, err.
function M.new(opts)
  local o = ffi.new("weir_exec_opts")
  o.workers = opts.workers or 2
  o.exe = opts.exe
  -- each list as a C array; the arrays (and strings) stay referenced by
  -- the pool (_keep) for as long as C may read them
  local keep = {}
  local function strings(list)
    list = list or {}
    local c = ffi.new("const char *[?]", #list + 1)
    for i, r in ipairs(list) do c[i - 1] = r end
    keep[#keep + 1], keep[#keep + 2] = c, list
    return c, #list
  end
  o.roots, o.nroots = strings(opts.roots)
  o.deny, o.ndeny = strings(opts.deny)
  o.protect, o.nprotect = strings(opts.protect)
  o.hide, o.nhide = strings(opts.hide)
  o.endpoints, o.nendpoints = strings(opts.endpoints)
  o.breakers, o.nbreakers = strings(opts.breakers)
  o.user = opts.user
  o.rlimit_as = opts.rlimit_as or 0
  o.rlimit_nofile = opts.rlimit_nofile or 0
  o.shared_fd = opts.shared_fd or -1
  o.preload = opts.preload or 0
  local out = ffi.new("weir_exec *[1]")
  local ok, err = check(C.weir_ffi_exec_new(o, out, F.errbuf, F.errlen))
  if not ok then return nil, err end
  local h = ffi.gc(out[0], C.weir_ffi_exec_delete)
  if opts.temps then
    ok, err = check(C.weir_ffi_exec_journal(h, opts.temps, F.errbuf, F.errlen))
    if not ok then C.weir_ffi_exec_delete(ffi.gc(h, nil)); return nil, err end
  end
  local self = setmetatable({
    h = h,
    n = o.workers,
    evs = ffi.new("weir_exec_event[?]", MAX_EVENTS),
    nev = ffi.new("int32_t[1]"),
    _keep = keep,
  }, Exec)
  return self
end

--- Queue payload for the worker in slot (0-based); cap = memory cap bytes.
-- The next poll sends it (with every job queued since, one write per worker).
function Exec:send(slot, cap, payload)
  return check(C.weir_ffi_exec_send(self.h, slot, cap, payload, #payload, F.errbuf, F.errlen))
end

local parts = ffi.new("const char *[8]")
local lens = ffi.new("size_t[8]")

--- Queue a job made of up to 8 parts sent back to back: strings, or
-- userdata from weir._native.ser_encode_ud with their length in sizes[i]
-- (no Lua string is built for the whole: many long, similar strings are
-- costly to intern).
function Exec:sendv(slot, cap, list, sizes)
  for i = 1, #list do
    local x = list[i]
    parts[i - 1] = x
    lens[i - 1] = type(x) == "string" and #x or sizes[i]
  end
  return check(C.weir_ffi_exec_sendv(self.h, slot, cap, parts, lens, #list, F.errbuf, F.errlen))
end

--- Wait up to timeout_ms for events. Returns an array of
-- { kind = "result"|"progress"|"exit"|"signal"|"wake", slot, pid, status,
-- result }: result (also of a progress frame) is what the worker sent,
-- decoded as plain data where the executor read it
-- (no Lua string is made of it), or nil when it could not be.
function Exec:poll(timeout_ms)
  local ok, err = check(C.weir_ffi_exec_poll(self.h, timeout_ms, self.evs, MAX_EVENTS,
                                             self.nev, F.errbuf, F.errlen))
  if not ok then return nil, err end
  local out = {}
  for i = 0, self.nev[0] - 1 do
    local e = self.evs[i]
    local kind = e.kind
    out[#out + 1] = {
      kind = kind == C.WEIR_EV_RESULT and "result" or kind == C.WEIR_EV_EXIT and "exit"
             or kind == C.WEIR_EV_WAKE and "wake" or kind == C.WEIR_EV_PROGRESS and "progress"
             or "signal",
      slot = e.slot, pid = e.pid, status = e.status,
      result = (kind == C.WEIR_EV_RESULT or kind == C.WEIR_EV_PROGRESS)
               and decode_ptr(e.data, tonumber(e.len)) or nil,
    }
  end
  return out
end

--- Also end a poll when fd is readable (a "wake" event; nil: none).
function Exec:watch(fd)
  C.weir_ffi_exec_watch(self.h, fd or -1)
end

--- SIGKILL the worker in slot; its exit event follows.
function Exec:kill(slot)
  return C.weir_ffi_exec_kill(self.h, slot) == 0
end

--- The pid of the worker in slot.
function Exec:pid(slot)
  return C.weir_ffi_exec_pid(self.h, slot)
end

--- Stop every worker and free the pool (safe twice).
function Exec:close()
  if self.h then
    C.weir_ffi_exec_delete(ffi.gc(self.h, nil))
    self.h = nil
  end
end

--- Remove the temporary files that the supervisors which journaled them
-- in dir (WEIR_HOME/temps) left when they were killed, and only those
-- (the exact files, by identity, never through a symlink); journals of
-- supervisors still running are left alone. Returns how many files went,
-- or nil, err.
function M.sweep_temps(dir)
  local n = ffi.new("int32_t[1]")
  local ok, err = check(C.weir_ffi_temps_sweep(dir, n, F.errbuf, F.errlen))
  if not ok then return nil, err end
  return n[0]
end

--- Clocks: wall and monotonic milliseconds.
function M.now() return C.weir_ffi_now_wall_ms() end
function M.mono() return C.weir_ffi_now_mono_ms() end
function M.sleep(ms) C.weir_ffi_sleep_ms(ms) end
function M.signal_install() return C.weir_ffi_signal_install() end
function M.signal_pending() return C.weir_ffi_signal_pending() end
function M.getpid() return C.weir_ffi_getpid() end
function M.pid_alive(pid) return C.weir_ffi_pid_alive(pid) == 1 end

return M
