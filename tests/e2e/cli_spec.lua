-- End-to-end: the real `weir` binary, real worker processes, a real
-- SQLite store in a temporary WEIR_HOME.
local H = require("helpers")

local function pipeline_file(dir, name, text)
  H.write(dir .. "/" .. name, text)
  return name
end

describe("weir CLI", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("prints its version and help", function()
    local code, out = H.weir(dir, "version")
    assert.equal(0, code)
    assert.matches("^weir %d+%.%d+%.%d+", out)
    code, out = H.weir(dir, "help")
    assert.equal(0, code)
    assert.matches("run FILE", out, 1, true)
    code = H.weir(dir, "frobnicate")
    assert.equal(2, code)
    -- bare weir is a usage error; each command has its own help
    local err
    code, out, err = H.weir(dir, "")
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("usage: weir <command>", err, 1, true)
    for _, args in ipairs({ "run --help", "help run", "run -h" }) do
      code, out = H.weir(dir, args)
      assert.equal(0, code, args)
      assert.matches("^usage: weir run FILE", out)
      assert.matches("--workers N", out, 1, true)
    end
    code, out, err = H.weir(dir, "run p.lua --param a=1 --param a=2")
    assert.equal(2, code, out)
    assert.matches("--param a given twice", err, 1, true)
    code, out = H.weir(dir, "completion bash")
    assert.equal(0, code)
    assert.matches("complete -o default -F _weir weir", out, 1, true)
  end)

  it("runs a pipeline, passes outputs downstream and records the run", function()
    pipeline_file(dir, "p.lua", [[
      local base = 40
      return pipeline {
        name = "simple",
        params = { n = { type = "integer", default = 2 } },
        tasks = {
          a = task { run = function(ctx) ctx.log("hello %s", "log") return { v = base } end },
          b = task { after = { "a" }, run = function(ctx)
            return { v = ctx.inputs.a.v + ctx.params.n, attempt = ctx.attempt } end },
        },
      }
    ]])
    local code, _, err = H.weir(dir, "run p.lua --param n=2")
    assert.equal(0, code, err)
    local run = H.show(dir, H.last_run(dir))
    assert.equal("success", run.status)
    assert.same({ v = 42, attempt = 1 }, H.task(run, "b").output)
    assert.equal("hello log", H.task(run, "a").attempt_list[1].log)
    local _, text = H.weir(dir, "runs")
    assert.matches("simple", text)
  end)

  it("rejects bad params with a clear message", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "p", params = { n = { type = "integer", default = 1 } },
        tasks = { a = task { run = function() end } } }
    ]])
    local code, _, err = H.weir(dir, "run p.lua --param n=abc")
    assert.equal(2, code)
    assert.matches('param "n": expected integer, got "abc"', err, 1, true)
    code, _, err = H.weir(dir, "run p.lua --param m=1")
    assert.equal(2, code)
    assert.matches('unknown param "m"', err, 1, true)
  end)

  it("validates and reports every error with its path and line", function()
    pipeline_file(dir, "bad.lua", [[
      return pipeline {
        name = "bad",
        tasks = {
          load = task {
            retries = "three",
            after = { "extrct" },
            run = function() end,
          },
          x = task { after = { "y" }, timeout = "10 parsecs", run = function() end },
          y = task { after = { "x" }, run = function() end },
        },
      }
    ]])
    local code, _, err = H.weir(dir, "validate bad.lua")
    assert.equal(1, code)
    assert.matches('bad.lua:4: tasks.load.retries: expected integer, got "three"', err, 1, true)
    assert.matches('tasks.load.after[1]: unknown task "extrct"', err, 1, true)
    assert.matches("dependency cycle x -> y -> x", err, 1, true)
    assert.matches("bad.lua:9: tasks.x.timeout", err, 1, true)
    code = H.weir(dir, "run bad.lua")
    assert.equal(1, code)
  end)

  it("reports a syntax error with file and line", function()
    pipeline_file(dir, "syn.lua", "return pipeline {\n name = 'x',\n tasks = { a = task { run = function() end } \n")
    local code, _, err = H.weir(dir, "validate syn.lua")
    assert.equal(1, code)
    assert.matches("syn.lua:%d+:", err)
  end)

  it("retries with backoff, then fails and skips what depends on the failure", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "flaky", tasks = {
        bad = task { retries = 2, retry_delay = "10ms", run = function(ctx)
          error("boom on attempt " .. ctx.attempt) end },
        after_bad = task { after = { "bad" }, run = function() return 1 end },
        fine = task { run = function() return "ok" end },
      } }
    ]])
    local code, _, err = H.weir(dir, "run p.lua")
    assert.equal(1, code, err)
    local run = H.show(dir, H.last_run(dir))
    assert.equal("failed", run.status)
    local bad = H.task(run, "bad")
    assert.equal("failed", bad.state)
    assert.equal(3, bad.attempts)
    assert.matches("boom on attempt 3", bad.error)
    assert.equal("upstream_failed", H.task(run, "after_bad").state)
    assert.equal("success", H.task(run, "fine").state)
  end)

  it("kills a task at its deadline, even inside one long C call", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "slow", tasks = {
        spin = task { timeout = "300ms", run = function() while true do end end },
        regex = task { timeout = "300ms", run = function()
          return string.rep("a", 2000):find(".-.-.-b") end },
        fine = task { run = function() return 1 end },
      } }
    ]])
    local t0 = os.time()
    local code = H.weir(dir, "run p.lua")
    assert.equal(1, code)
    assert.is_true(os.time() - t0 < 20)
    local run = H.show(dir, H.last_run(dir))
    assert.matches("timed out after 300ms", H.task(run, "spin").error, 1, true)
    assert.matches("timed out after 300ms", H.task(run, "regex").error, 1, true)
    assert.equal("success", H.task(run, "fine").state)
  end)

  it("names the user's line when a call into the library fails", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "blame", tasks = {
        tail = task { retries = 0, run = function(ctx)
          return ctx.path(123)
        end },
        nested = task { retries = 0, run = function(ctx)
          local s = ctx.csv(nil)
          return s
        end },
        method = task { retries = 0, run = function(ctx)
          local s = ctx.rows({ { a = 1 } })
          return s:map(5):count()
        end },
        own = task { retries = 0, run = function() error("exactly this", 0) end },
        failed = task { retries = 0, run = function(ctx) ctx.fail("custom failure") end },
        vm = task { retries = 0, run = function()
          local x
          return x.field
        end },
      } }
    ]])
    -- chunk names with a colon (YAML tasks) are placed once too
    pipeline_file(dir, "q.yaml", "name: q\ntasks:\n  a:\n    retries: 0\n"
                  .. "    run: \"local ctx = ... ctx.fail('from yaml')\"\n")
    assert.equal(1, H.weir(dir, "run q.yaml"))
    local q = H.show(dir, H.last_run(dir))
    assert.equal("q.yaml:tasks.a:1: from yaml", H.task(q, "a").error)
    assert.equal(1, H.weir(dir, "run p.lua"))
    local run = H.show(dir, H.last_run(dir))
    -- a tail call leaves no frame of the user's: the function's first line
    assert.equal("p.lua:2: ctx.path: bad path (string expected)", H.task(run, "tail").error)
    assert.equal("p.lua:6: ctx.path: bad path (string expected)", H.task(run, "nested").error)
    assert.equal("p.lua:11: weir.stream.map: bad 'fn' (function expected)",
                 H.task(run, "method").error)
    assert.equal("exactly this", H.task(run, "own").error)
    assert.equal("p.lua:14: custom failure", H.task(run, "failed").error)
    assert.equal("p.lua:17: attempt to index local 'x' (a nil value)", H.task(run, "vm").error)
  end)

  it("enforces the memory cap of a task", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "mem", tasks = {
        hog = task { memory = "16MB", run = function()
          local t = {}
          for i = 1, 1e8 do t[i] = { i } end
        end },
        bigstr = task { memory = "16MB", run = function() return #string.rep("x", 64 * 1024 * 1024) end },
        -- caught the memory error, then failed for another reason: that
        -- reason is what the task failed of
        recovered = task { memory = "16MB", retries = 0, run = function()
          pcall(string.rep, "x", 64 * 1024 * 1024)
          error("a different failure")
        end },
        fine = task { run = function() return 1 end },
      } }
    ]])
    local code = H.weir(dir, "run p.lua")
    assert.equal(1, code)
    local run = H.show(dir, H.last_run(dir))
    assert.matches("memory limit of 16 MB exceeded", H.task(run, "hog").error, 1, true)
    assert.matches("memory limit of 16 MB exceeded", H.task(run, "bigstr").error, 1, true)
    assert.matches("a different failure", H.task(run, "recovered").error, 1, true)
    assert.equal("success", H.task(run, "fine").state)
  end)

  it("refuses outputs that are too large or not JSON-able", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "out", tasks = {
        big = task { output_max = "1KB", run = function() return string.rep("x", 5000) end },
        fn = task { run = function() return { f = function() end } end },
        cyc = task { run = function() local t = {} t.self = t return t end },
      } }
    ]])
    H.weir(dir, "run p.lua")
    local run = H.show(dir, H.last_run(dir))
    assert.matches("task output", H.task(run, "big").error, 1, true)
    assert.matches("function", H.task(run, "fn").error, 1, true)
    assert.matches("cycle", H.task(run, "cyc").error, 1, true)
  end)

  it("fails only the attempt whose worker was killed, and retries it", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "crash", tasks = {
        victim = task { retries = 1, retry_delay = "10ms", run = function(ctx)
          if ctx.attempt == 1 then local t0 = os.clock() while os.clock() - t0 < 5 do end end
          return ctx.attempt end },
      } }
    ]])
    local pid = H.spawn(dir, "run p.lua --workers 1", dir .. "/run.log")
    -- the worker is the child of the supervisor that runs `__worker`
    local wpid = H.wait_for(function()
      local s = H.output("pgrep -P " .. pid .. " -f __worker")
      return tonumber(s:match("%d+"))
    end, 10)
    assert.truthy(wpid)
    os.execute("sleep 0.5")
    os.execute("kill -9 " .. wpid)
    H.wait_dead(pid, 20)
    local run = H.show(dir, H.last_run(dir))
    local t = H.task(run, "victim")
    assert.equal("success", t.state)
    assert.equal(2, t.output)
    assert.matches("worker killed by SIGKILL", t.attempt_list[1].error, 1, true)
  end)

  it("cancels cleanly on SIGTERM", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "long", tasks = {
        forever = task { run = function() while true do end end },
        next = task { after = { "forever" }, run = function() end },
      } }
    ]])
    local pid = H.spawn(dir, "run p.lua", dir .. "/run.log")
    H.wait_for(function() return H.output("pgrep -P " .. pid .. " -f __worker") ~= "" end, 10)
    os.execute("sleep 0.3")
    os.execute("kill -TERM " .. pid)
    H.wait_dead(pid)
    local run = H.show(dir, H.last_run(dir))
    assert.equal("cancelled", run.status)
    assert.equal("cancelled", H.task(run, "forever").state)
    assert.equal("cancelled", H.task(run, "next").state)
    assert.equal("", H.output("pgrep -f 'weir __worker' -P " .. pid))
  end)

  it("stops loading a pipeline on SIGINT", function()
    pipeline_file(dir, "p.lua", [[
      local t0 = os.clock() while os.clock() - t0 < 5 do end
      return pipeline { name = "slowload", tasks = { a = task { run = function() end } } }
    ]])
    local pid = H.spawn(dir, "run p.lua", dir .. "/run.log")
    os.execute("sleep 0.5")
    os.execute("kill -INT " .. pid)
    H.wait_dead(pid)
    assert.matches("loading interrupted by signal 2", H.read(dir .. "/run.log"), 1, true)
    assert.is_nil(H.last_run(dir))
  end)

  it("resumes a run whose supervisor was killed, re-running only what did not succeed", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "resumable", tasks = {
        first = task { run = function() return "done" end },
        second = task { after = { "first" }, run = function(ctx)
          local t0 = os.time() while os.time() - t0 < 2 do end
          return ctx.inputs.first .. "+second" end },
      } }
    ]])
    local pid = H.spawn(dir, "run p.lua", dir .. "/run.log")
    local run_id = H.wait_for(function()
      local id = H.last_run(dir)
      if not id then return nil end
      local r = H.show(dir, id)
      local s = H.task(r, "second")
      return s and s.state == "running" and id
    end, 10)
    assert.truthy(run_id)
    local workers = H.output("pgrep -P " .. pid .. " -f __worker")
    os.execute("kill -9 " .. pid)
    assert.truthy(H.wait_dead(pid))
    -- the workers die with their supervisor
    for w in workers:gmatch("%d+") do assert.truthy(H.wait_dead(w, 5)) end
    local code, _, err = H.weir(dir, "resume " .. run_id)
    assert.equal(0, code, err)
    local run = H.show(dir, run_id)
    assert.equal("success", run.status)
    assert.equal(1, H.task(run, "first").attempts)
    assert.equal("done+second", H.task(run, "second").output)
    assert.equal("lost", H.task(run, "second").attempt_list[1].status)
  end)

  it("runs only one task, or a task and what follows it", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "sel", tasks = {
        a = task { run = function() return 1 end },
        b = task { after = { "a" }, run = function() return 2 end },
        c = task { after = { "b" }, run = function() return 3 end },
      } }
    ]])
    assert.equal(0, (H.weir(dir, "run p.lua --only b")))
    local run = H.show(dir, H.last_run(dir))
    assert.equal("skipped", H.task(run, "a").state)
    assert.equal("success", H.task(run, "b").state)
    assert.equal("skipped", H.task(run, "c").state)
    assert.equal(0, (H.weir(dir, "run p.lua --from b")))
    run = H.show(dir, H.last_run(dir))
    assert.equal("skipped", H.task(run, "a").state)
    assert.equal("success", H.task(run, "c").state)
  end)

  it("rejects --only with --from, and bad defaults", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "d", defaults = { memory = "10i", timeout = "soon" },
        tasks = { a = task { run = function() end } } }
    ]])
    local code, out = H.weir(dir, "validate p.lua --json")
    assert.equal(1, code)
    local v = require("weir.json").decode(out)
    assert.is_false(v.valid)
    local paths = {}
    for _, e in ipairs(v.errors) do paths[e.path] = e.message end
    assert.truthy(paths["defaults.memory"])
    assert.truthy(paths["defaults.timeout"])
    code = H.weir(dir, "run p.lua --only a --from a")
    assert.equal(2, code)
  end)

  it("never parks a task behind a long one while a worker is free", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "hol", tasks = {
        a_long = task { run = function() local t0 = os.time() while os.time() - t0 < 2 do end end },
        b = task { run = function() return 1 end },
        c = task { run = function() return 2 end },
      } }
    ]])
    assert.equal(0, (H.weir(dir, "run p.lua --workers 2")))
    local r = H.show(dir, H.last_run(dir))
    assert.is_true(H.ms(H.task(r, "c").finished_at) < H.ms(H.task(r, "a_long").finished_at) - 500)
  end)

  it("seeds math.random differently in every attempt", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "rnd", tasks = {
        a = task { run = function() return math.random(1, 1e9) end },
        b = task { run = function() return math.random(1, 1e9) end },
      } }
    ]])
    assert.equal(0, (H.weir(dir, "run p.lua")))
    local r = H.show(dir, H.last_run(dir))
    assert.are_not.equal(H.task(r, "a").output, H.task(r, "b").output)
  end)

  it("runs YAML and JSON pipelines", function()
    pipeline_file(dir, "p.yaml", [[
name: yamlpipe
params:
  who: { type: string, default: world }
tasks:
  greet:
    run: |
      local ctx = ...
      return "hello " .. ctx.params.who
  shout:
    after: [greet]
    run: "local ctx = ... return ctx.inputs.greet:upper()"
]])
    local code, _, err = H.weir(dir, "run p.yaml")
    assert.equal(0, code, err)
    local run = H.show(dir, H.last_run(dir))
    assert.equal("HELLO WORLD", H.task(run, "shout").output)
    pipeline_file(dir, "p.json", [[{"name": "jsonpipe", "tasks": {"a": {"run": "return 7"}}}]])
    code, _, err = H.weir(dir, "run p.json")
    assert.equal(0, code, err)
    pipeline_file(dir, "bad.yaml", "name: b\ntasks:\n  a:\n    retries: -1\n    run: 'return 1'\n")
    code, _, err = H.weir(dir, "validate bad.yaml")
    assert.equal(1, code)
    assert.matches("bad.yaml:4: tasks.a.retries:", err, 1, true)
  end)

  it("caps the log of an attempt", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "loud", tasks = { a = task { log_max = "1KB", run = function(ctx)
        for i = 1, 1000 do ctx.log("line %d", i) end end } } }
    ]])
    assert.equal(0, (H.weir(dir, "run p.lua")))
    local log = H.task(H.show(dir, H.last_run(dir)), "a").attempt_list[1].log
    assert.is_true(#log < 1200)
    assert.matches("[log truncated at 1024 bytes]", log, 1, true)
  end)

  it("never puts an earlier attempt's error in an event, and times in RFC 3339", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "j", tasks = { a = task { retries = 1, retry_delay = "10ms",
        run = function(ctx) if ctx.attempt == 1 then error("first try", 0) end return 1 end } } }
    ]])
    local code, _, err = H.weir(dir, "run p.lua --log-format json")
    assert.equal(0, code, err)
    local states = {}
    for line in err:gmatch("[^\n]+") do
      local ev = require("weir.json").decode(line)
      assert.matches("^%d+%-%d+%-%d+T%d+:%d+:%d+%.%d+Z$", ev.time)
      if ev.event == "task" then
        states[#states + 1] = ev.state .. (ev.error and (": " .. ev.error) or "")
      end
    end
    assert.same({ "running", "up_for_retry: first try", "queued", "running", "success" }, states)
  end)

  it("colours states on a terminal, never with NO_COLOR", function()
    if not H.succeeds("command -v script >/dev/null") then
      pending("needs script(1) for a terminal")
      return
    end
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "c", tasks = { a = task { run = function() return 1 end } } }
    ]])
    assert.equal(0, (H.weir(dir, "run p.lua -q")))
    local function on_tty(env)
      return H.output("cd " .. H.q(dir) .. " && " .. env .. " WEIR_HOME=.weir script -qec "
                      .. H.q(H.q(H.bin) .. " show last") .. " /dev/null")
    end
    assert.matches("\27[32msuccess\27[0m", on_tty("TERM=xterm"), 1, true)
    assert.is_nil(on_tty("TERM=xterm NO_COLOR=1"):find("\27[", 1, true))
    local _, plain = H.weir(dir, "show last")
    assert.is_nil(plain:find("\27[", 1, true))
  end)

  it("prints JSON log lines with --log-format json", function()
    pipeline_file(dir, "p.lua", [[
      return pipeline { name = "j", tasks = { a = task { run = function() return 1 end } } }
    ]])
    local code, _, err = H.weir(dir, "run p.lua --log-format json")
    assert.equal(0, code)
    local json = require("weir.json")
    local events = {}
    for line in err:gmatch("[^\n]+") do
      if line:sub(1, 1) == "{" then events[#events + 1] = json.decode(line) end
    end
    assert.equal("run_started", events[1].event)
    assert.equal("task", events[2].event)
    assert.equal("run", events[#events].event)
    for line in err:gmatch("[^\n]+") do assert.equal("{", line:sub(1, 1)) end
    assert.equal("success", events[#events].status)
  end)
end)
