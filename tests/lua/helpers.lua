-- helpers.lua - shared by the specs: temporary folders and files, shell
-- commands, running the real weir binary, and the PostgreSQL and Redis
-- servers of scripts/services.sh (the one the suite starts, or a private
-- one a spec may stop and restart).
local busted = require("busted")

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

-- ---------------------------------------------------------------- shell

--- The standard output of shell command cmd, whole.
function M.output(cmd)
  local p = io.popen(cmd)
  local s = p:read("*a")
  p:close()
  return s
end

--- The exit code of shell command cmd.
function M.status(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then code = ok / 256 end -- Lua 5.1 returns the raw status
  return code
end

--- Did shell command cmd exit with 0?
function M.succeeds(cmd)
  return M.status(cmd) == 0
end

-- "env" arguments: WEIR_HOME=dir/.weir and the pairs of env.
local function env_words(dir, env)
  local words = "WEIR_HOME=" .. sh_quote(dir .. "/.weir")
  for k, v in pairs(env or {}) do words = words .. " " .. k .. "=" .. sh_quote(v) end
  return words
end

--- Run `weir ARGS` in dir with WEIR_HOME=dir/.weir and env added. Returns
-- code, stdout, stderr.
function M.weir(dir, args, env)
  local out, err = os.tmpname(), os.tmpname()
  local code = M.status(string.format("cd %s && env %s %s %s >%s 2>%s", sh_quote(dir),
                                      env_words(dir, env), sh_quote(M.bin), args, out, err))
  local o, e = M.read(out), M.read(err)
  os.remove(out); os.remove(err)
  return code, o, e
end

--- Start `weir ARGS` in dir, as M.weir does, in the background with its
-- output to logfile; returns its pid. With codefile, a shell waits for it
-- and writes its exit code there (the pid is then the shell's).
function M.spawn(dir, args, logfile, env, codefile)
  local cmd = string.format("env %s %s %s >%s 2>&1", env_words(dir, env), sh_quote(M.bin),
                            args, sh_quote(logfile))
  if codefile then
    -- the subshell's own output away too: it must not hold the pipe
    -- M.output reads (which would wait for the command to end)
    cmd = string.format("(%s; echo $? >%s) >/dev/null 2>&1 </dev/null", cmd, sh_quote(codefile))
  else
    cmd = "exec " .. cmd
  end
  return tonumber(M.output(string.format("cd %s && { %s & } ; echo $!", sh_quote(dir), cmd))
                    :match("%d+"))
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
  -- nil, not an error, while the store cannot be read yet (a run in
  -- another process may be creating it): callers poll with wait_for
  local list = require("weir.json").decode(out)
  return list and list[1] and list[1].run_id
end

--- Milliseconds since the epoch of an RFC 3339 UTC time that weir printed
-- ("2026-12-07T06:36:42.123Z").
function M.ms(t)
  local y, mo, d, h, mi, s, frac = t:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)Z$")
  assert(y, "not an RFC 3339 UTC time: " .. tostring(t))
  -- days since the epoch (proleptic Gregorian), without the local zone
  local yy, mm = tonumber(y), tonumber(mo)
  if mm <= 2 then yy = yy - 1; mm = mm + 12 end
  local days = 365 * yy + math.floor(yy / 4) - math.floor(yy / 100) + math.floor(yy / 400)
               + math.floor((153 * (mm - 3) + 2) / 5) + tonumber(d) - 719469
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(s) * 1000
         + (frac ~= "" and tonumber((frac .. "00"):sub(1, 3)) or 0)
end

function M.task(run, name)
  for _, t in ipairs(run.tasks) do if t.task == name then return t end end
end

--- A task attempt job as the engine sends it to a worker (weir._attempt):
-- src is the task's Lua text (ctx is `...`), run in a sandbox rooted at
-- dir; extra fields win.
function M.attempt_job(src, dir, extra)
  local job = { kind = "attempt", src = src, chunkname = "=task.lua", run_id = "run1",
                task = "t", attempt = 1, pipeline = "p", params = {}, inputs = {},
                base_dir = dir, roots = { dir }, output_max = 1048576, log_max = 65536 }
  for k, v in pairs(extra or {}) do job[k] = v end
  return job
end

--- Poll the executor pool ex until want(event) is true for one event, or
-- timeout seconds (30) pass; returns that event (nil on timeout) and every
-- event seen.
function M.await_event(ex, want, timeout)
  local executor = require("weir.executor")
  local seen = {}
  local deadline = executor.mono() + (timeout or 30) * 1000
  while executor.mono() < deadline do
    for _, e in ipairs(assert(ex:poll(100))) do
      seen[#seen + 1] = e
      if want(e) then return e, seen end
    end
  end
  return nil, seen
end

-- ------------------------------------------------------------- services

-- What scripts/services.sh writes for each server (DIR/env), and how its
-- URL holds the port and the password.
local SERVICES = {
  pg = { url = "WEIR_TEST_PG_URL", port = "WEIR_TEST_PG_PORT",
         password = "WEIR_TEST_PG_PASSWORD", start = "start-pg", restart = "restart-pg",
         pattern = "^postgres://[^:]*:([^@]*)@[^:/]*:(%d+)" },
  redis = { url = "WEIR_TEST_REDIS_URL", port = "WEIR_TEST_REDIS_PORT",
            password = "WEIR_TEST_REDIS_PASSWORD", start = "start-redis",
            pattern = "^redis://[^:]*:([^@]*)@[^:/]*:(%d+)" },
}

local function service_from(name, get)
  local S = assert(SERVICES[name], "no such test service")
  local url = get(S.url)
  if not url or url == "" then return nil end
  local pw, port = url:match(S.pattern)
  return { url = url, port = tonumber(get(S.port) or port),
           password = get(S.password) or pw }
end

--- The server of scripts/services.sh for name ("pg" or "redis"), from the
-- environment the suite runs in: { url, port, password }; or nil and a
-- sentence saying how to start one.
function M.service(name)
  local s = service_from(name, os.getenv)
  if s then return s end
  return nil, SERVICES[name].url .. " is unset (bash scripts/services.sh start DIR; . DIR/env)"
end

--- describe(title, fn) when the server name needs is there (needs nil:
-- always); otherwise a pending spec saying why, never a silent skip.
function M.describe_with(needs, title, fn)
  local ok, why = true, nil
  if needs then ok, why = M.service(needs) end
  if ok then return busted.describe(title, fn) end
  return busted.pending(title .. ": " .. why)
end

--- A private server for name ("pg") that a spec may restart or stop: a
-- fresh scripts/services.sh folder under /tmp (the server runs as another
-- user, who must reach it). The service table of M.service, plus dir,
-- restart() and stop() (which also removes the folder).
function M.private_service(name)
  local S = SERVICES[name]
  local script = "bash " .. sh_quote(M.src .. "/scripts/services.sh")
  local dir = M.output("mktemp -d /tmp/weir-spec-" .. name .. "-XXXXXX"):gsub("%s+$", "")
  assert(M.succeeds("chmod 755 " .. sh_quote(dir)))
  assert(M.succeeds(script .. " " .. S.start .. " " .. sh_quote(dir) .. " >/dev/null"),
         "could not start a private " .. name .. " server")
  local s = service_from(name, function(key)
    return M.output(". " .. sh_quote(dir .. "/env") .. " && printf %s \"$" .. key .. "\"")
  end)
  s.dir = dir
  function s.restart()
    return M.succeeds(script .. " " .. S.restart .. " " .. sh_quote(dir) .. " >/dev/null")
  end
  function s.stop()
    M.succeeds(script .. " stop " .. sh_quote(dir) .. " >/dev/null")
    M.cleanup(dir)
  end
  return s
end

--- weir.yaml with one connection, name, to the local server of service
-- ("pg" or "redis") on port, its password read from $WEIR_PW; extra:
-- more YAML after it (lines indented by four spaces belong to it).
function M.yaml(service, name, port, extra)
  local conn = ({
    pg = '    type: postgres\n    url: "postgres://weir:${env:WEIR_PW}@127.0.0.1:%s/postgres"\n'
         .. "    sslmode: disable\n",
    redis = '    type: redis\n    url: "redis://:${env:WEIR_PW}@127.0.0.1:%s/3"\n',
  })[service]
  return "connections:\n  " .. name .. ":\n" .. conn:format(port) .. (extra or "")
end

--- Start `weir serve --listen 127.0.0.1:0 ARGS` in dir (env added), its
-- output in dir/NAME.log; waits until it listens. Returns its pid, its
-- base URL and the log's path.
function M.serve(dir, env, name, args)
  local log = dir .. "/" .. (name or "serve") .. ".log"
  os.remove(log)
  local pid = M.spawn(dir, "serve --listen 127.0.0.1:0 " .. (args or ""), log, env)
  local port = M.wait_for(function()
    local l = M.read(log)
    return l and tonumber(l:match("listening on 127%.0%.0%.1:(%d+)"))
  end, 30)
  assert(port, "weir serve did not start: " .. tostring(M.read(log)))
  return pid, "http://127.0.0.1:" .. port, log
end

return M
