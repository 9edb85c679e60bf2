-- pty.lua - drive a program through a real pseudo-terminal (weir repl's
-- specs): posix_openpt, and posix_spawn of a new session whose stdin,
-- stdout and stderr are the terminal's slave side, so it is the
-- controlling terminal (^C sends SIGINT, libedit sees a terminal).
local ffi = require("ffi")

local M = {}

for _, decl in ipairs({
  "int posix_openpt(int flags);",
  "int grantpt(int fd);",
  "int unlockpt(int fd);",
  "char *ptsname(int fd);",
  "int posix_spawn_file_actions_init(void *fa);",
  "int posix_spawn_file_actions_destroy(void *fa);",
  "int posix_spawn_file_actions_addopen(void *fa, int fd, const char *path, int oflag, int mode);",
  "int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd);",
  "int posix_spawnattr_init(void *a);",
  "int posix_spawnattr_destroy(void *a);",
  "int posix_spawnattr_setflags(void *a, short flags);",
  "int posix_spawnattr_setsigmask(void *a, const void *set);",
  "int posix_spawnattr_setsigdefault(void *a, const void *set);",
  "int sigemptyset(void *set);",
  "int sigaddset(void *set, int sig);",
  "int posix_spawn(int *pid, const char *path, const void *fa, const void *attr, "
    .. "char *const argv[], char *const envp[]);",
  "typedef struct { int fd; short events; short revents; } weir_pty_pollfd;",
  "int poll(void *fds, unsigned long n, int timeout);",
  "long read(int fd, void *buf, size_t n);",
  "long write(int fd, const void *buf, size_t n);",
  "int close(int fd);",
  "int kill(int pid, int sig);",
  "int waitpid(int pid, int *status, int options);",
  "int ioctl(int fd, unsigned long req, ...);",
  "extern char **environ;",
  "int tcgetattr(int fd, void *termios);",
}) do
  pcall(ffi.cdef, decl)
end
local C = ffi.C

local O_RDWR, O_NOCTTY, O_CLOEXEC = 2, 256, 524288
local SETSID, SETSIGMASK, SETSIGDEF = 0x80, 0x08, 0x04
local TIOCSWINSZ = 0x5414

local P = {}
P.__index = P

--- Start `/bin/sh -c cmd` on a new terminal (24 rows, 100 columns).
function M.spawn(cmd)
  -- close-on-exec: a child holding the master would never see the
  -- terminal hang up when the spec ends
  local m = C.posix_openpt(O_RDWR + O_NOCTTY + O_CLOEXEC)
  assert(m >= 0, "posix_openpt failed")
  assert(C.grantpt(m) == 0 and C.unlockpt(m) == 0, "grantpt/unlockpt failed")
  local slave = ffi.string(C.ptsname(m))
  local ws = ffi.new("unsigned short[4]", { 24, 100, 0, 0 })
  C.ioctl(m, TIOCSWINSZ, ws)
  local fa = ffi.new("char[256]")
  local at = ffi.new("char[512]")
  local none, defs = ffi.new("char[128]"), ffi.new("char[128]")
  C.posix_spawn_file_actions_init(fa)
  C.posix_spawn_file_actions_addopen(fa, 0, slave, O_RDWR, 0)
  C.posix_spawn_file_actions_adddup2(fa, 0, 1)
  C.posix_spawn_file_actions_adddup2(fa, 0, 2)
  C.posix_spawnattr_init(at)
  C.sigemptyset(none)
  C.sigemptyset(defs)
  for _, s in ipairs({ 1, 2, 3, 13, 15 }) do C.sigaddset(defs, s) end
  C.posix_spawnattr_setsigmask(at, none)
  C.posix_spawnattr_setsigdefault(at, defs)
  C.posix_spawnattr_setflags(at, SETSID + SETSIGMASK + SETSIGDEF)
  local args = { "/bin/sh", "-c", cmd }
  local argv = ffi.new("char *[4]")
  local keep = {}
  for i, a in ipairs(args) do
    keep[i] = ffi.new("char[?]", #a + 1, a)
    argv[i - 1] = keep[i]
  end
  local pid = ffi.new("int[1]")
  local rc = C.posix_spawn(pid, "/bin/sh", fa, at, argv, C.environ)
  C.posix_spawn_file_actions_destroy(fa)
  C.posix_spawnattr_destroy(at)
  assert(rc == 0, "posix_spawn failed: " .. rc)
  return setmetatable({ fd = m, pid = pid[0], buf = "", seen = 0 }, P)
end

-- Read what is there within ms milliseconds; false at end of output.
function P:pump(ms)
  local pfd = ffi.new("weir_pty_pollfd[1]")
  pfd[0].fd, pfd[0].events = self.fd, 1
  if C.poll(pfd, 1, ms) <= 0 then return true end
  local b = ffi.new("char[4096]")
  local n = C.read(self.fd, b, 4096)
  if n <= 0 then return false end
  self.buf = self.buf .. ffi.string(b, n)
  return true
end

--- The output so far, escape sequences removed.
function P:text()
  return (self.buf:gsub("\27%[[%d;?]*[%a~]", ""):gsub("\27[%(%)][%w]", ""):gsub("\r", ""))
end

--- Wait until plain text s appears in the output after what earlier
-- expects consumed (timeout seconds, default 20); returns the output up
-- to it, or raises with the whole transcript.
function P:expect(s, timeout)
  local deadline = os.time() + (timeout or 20)
  while true do
    local t = self:text()
    local i, j = t:find(s, self.seen + 1, true)
    if i then
      local before = t:sub(self.seen + 1, j)
      self.seen = j
      return before
    end
    if os.time() > deadline or not self:pump(100) then
      error(string.format("expected %q; the terminal shows:\n%s", s, t), 2)
    end
  end
end

--- Wait until the program reads keys one by one (the terminal is out of
-- canonical mode: a line editor is waiting), then send s. Keys sent
-- before would be taken by the terminal's own line discipline (^D read
-- as the end of a line, not as a key).
function P:type(s)
  local t = ffi.new("unsigned int[16]")
  local deadline = os.time() + 20
  while C.tcgetattr(self.fd, t) == 0 and bit.band(t[3], 2) ~= 0 do
    assert(os.time() <= deadline, "the program never read keys")
    self:pump(10)
  end
  self:send(s)
end

--- Send s (as keystrokes, one write) now.
function P:send(s)
  assert(C.write(self.fd, s, #s) == #s, "write to the terminal failed")
end

--- Wait for the program to exit (timeout seconds); returns its exit code
-- (or nil when it did not exit: it is then killed).
function P:wait(timeout)
  local st = ffi.new("int[1]")
  local deadline = os.time() + (timeout or 20)
  while os.time() <= deadline do
    self:pump(50)
    local r = C.waitpid(self.pid, st, 1)
    if r == self.pid then
      self.reaped = true
      C.close(self.fd)
      self.fd = -1
      local s = st[0]
      if s % 128 == 0 then return math.floor(s / 256) % 256 end
      return nil
    end
  end
  C.kill(self.pid, 9)
  C.waitpid(self.pid, st, 0)
  self.reaped = true
  C.close(self.fd)
  self.fd = -1
  return nil
end

--- Kill the program if it still runs (a spec that failed half-way) and
-- close the terminal; safe twice.
function P:close()
  if not self.reaped then
    local st = ffi.new("int[1]")
    if C.waitpid(self.pid, st, 1) == 0 then
      C.kill(self.pid, 9)
      C.waitpid(self.pid, st, 0)
    end
    self.reaped = true
  end
  if self.fd >= 0 then C.close(self.fd) end
  self.fd = -1
end

--- Close the terminal only (the program sees it hang up).
function P:hangup()
  C.close(self.fd)
  self.fd = -1
end

return M
