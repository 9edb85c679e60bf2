-- helpers.lua - shared by the specs: temporary folders, running the real
-- weir binary, writing files.
local M = {}

M.bin = os.getenv("WEIR_BIN") or "build/weir"
M.src = os.getenv("WEIR_SRC") or "."

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.q = sh_quote

--- A fresh temporary folder (removed by M.cleanup).
function M.tmpdir()
  local base = os.getenv("WEIR_TEST_TMP") or "/tmp"
  os.execute("mkdir -p " .. sh_quote(base))
  local p = io.popen("mktemp -d " .. sh_quote(base .. "/weir-spec-XXXXXX"))
  local d = p:read("*l")
  p:close()
  os.execute("chmod 755 " .. sh_quote(d))
  return d
end

function M.cleanup(dir)
  if dir and dir:match("weir%-spec%-") then os.execute("rm -rf " .. sh_quote(dir)) end
end

function M.write(path, text)
  os.execute("mkdir -p " .. sh_quote(path:match("^(.*)/") or "."))
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- Run `weir ARGS` in dir with WEIR_HOME=dir/.weir. Returns code, stdout,
-- stderr.
function M.weir(dir, args, env)
  local out, err = os.tmpname(), os.tmpname()
  local envs = "WEIR_HOME=" .. sh_quote(dir .. "/.weir")
  for k, v in pairs(env or {}) do envs = envs .. " " .. k .. "=" .. sh_quote(v) end
  local cmd = string.format("cd %s && env %s %s %s >%s 2>%s", sh_quote(dir), envs,
                            sh_quote(M.bin), args, out, err)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then code = ok / 256 end -- Lua 5.1 returns the raw status
  local o, e = M.read(out), M.read(err)
  os.remove(out); os.remove(err)
  return code, o, e
end

--- Start `weir ARGS` in the background; returns its pid.
function M.spawn(dir, args, logfile)
  local cmd = string.format("cd %s && WEIR_HOME=%s %s %s >%s 2>&1 & echo $!", sh_quote(dir),
                            sh_quote(dir .. "/.weir"), sh_quote(M.bin), args, sh_quote(logfile))
  local p = io.popen(cmd)
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid
end

function M.sh(cmd)
  local p = io.popen(cmd)
  local s = p:read("*a")
  p:close()
  return s
end

--- Wait until fn() is truthy or timeout seconds pass.
function M.wait_for(fn, timeout)
  local deadline = os.time() + (timeout or 10)
  while os.time() <= deadline do
    local v = fn()
    if v then return v end
    os.execute("sleep 0.05")
  end
  return nil
end

--- Write src as dir/p.lua and `weir run` it; returns the exit code, the
-- decoded `weir show --json` of the run and stderr.
function M.run_pipeline(dir, src, args)
  M.write(dir .. "/p.lua", src)
  local code, _, err = M.weir(dir, "run p.lua " .. (args or ""))
  return code, M.show(dir, M.last_run(dir)), err
end

--- Wait until process pid has exited (gone, or a zombie not yet reaped).
function M.wait_dead(pid, timeout)
  return M.wait_for(function()
    local stat = M.read("/proc/" .. pid .. "/stat")
    return stat == nil or stat:match("%) ([ZX])") ~= nil
  end, timeout or 10)
end

--- Decode `weir show RUN --json`.
function M.show(dir, run_id)
  local code, out = M.weir(dir, "show " .. run_id .. " --json")
  assert(code == 0, "weir show failed")
  return require("weir.json").decode(out)
end

--- The last run's id in dir.
function M.last_run(dir)
  local _, out = M.weir(dir, "runs --json --limit 1")
  local list = require("weir.json").decode(out)
  return list[1] and list[1].id
end

function M.task(run, name)
  for _, t in ipairs(run.tasks) do if t.task == name then return t end end
end

return M
