-- weir.pipeline: loading the three forms, the definition phase in a real
-- worker (driven by weir.engine.drive), validation with paths and lines,
-- and parameters.
local pipeline = require("weir.pipeline")
local executor = require("weir.executor")
local H = require("helpers")

describe("weir.pipeline.load", function()
  local dir, exec
  setup(function()
    dir = H.tmpdir()
    exec = assert(executor.new({ workers = 1, roots = { dir } }))
  end)
  teardown(function()
    exec:close()
    H.cleanup(dir)
  end)

  local function load(name, text, opts)
    H.write(dir .. "/" .. name, text)
    opts = opts or {}
    opts.exec = opts.exec == nil and exec or opts.exec or nil
    return pipeline.load(dir .. "/" .. name, opts)
  end

  it("evaluates a Lua file in a worker and applies defaults to every task", function()
    local P = assert(load("p.lua", [[
local n = 3
return pipeline {
  name = "p",
  defaults = { retries = 2, timeout = "30s", memory = "16MB" },
  tasks = {
    a = task { run = function() return n end },
    b = task { after = { "a" }, retries = 0, run = function(ctx) return ctx.inputs.a end },
  },
}
]]))
    assert.equal("p", P.name)
    assert.equal("lua", P.kind)
    assert.equal(2, P.tasks.a.retries)
    assert.equal(0, P.tasks.b.retries)
    assert.equal(30, P.tasks.a.timeout)
    assert.equal(16 * 1024 * 1024, P.tasks.b.memory)
    assert.same({ "a" }, P.tasks.b.after)
    assert.equal("string", type(P.tasks.a.fn.blob))
    assert.equal(dir, P.base_dir)
    assert.equal(64, #P.hash)
  end)

  it("loads YAML with run as text and reports a syntax error in it", function()
    local P = assert(load("p.yaml", "name: y\ntasks:\n  a:\n    run: 'return 1'\n"))
    assert.equal("return 1", P.tasks.a.fn.src)
    local _, errs = load("bad.yaml", "name: y\ntasks:\n  a:\n    run: 'return +'\n")
    assert.equal("tasks.a.run", errs[1].path)
  end)

  it("checks the schedule: cron, time zone, catch-up, jitter, with paths and lines", function()
    local _, errs = load("sched.yaml", [[
name: s
schedule:
  cron: "0 25 * * *"
  timezone: Mars/Olympus
  catchup: sometimes
  max_catchup: 0
  jitter: soon
tasks:
  a: { run: "return 1" }
]])
    local text = pipeline.format_errors(errs)
    assert.matches("sched.yaml:3: schedule.cron: hour: 25 is out of range 0-23", text, 1, true)
    assert.matches('sched.yaml:4: schedule.timezone: unknown time zone "Mars/Olympus"', text, 1, true)
    assert.matches("sched.yaml:5: schedule.catchup: must be one of", text, 1, true)
    assert.matches("sched.yaml:6: schedule.max_catchup: must be >= 1", text, 1, true)
    assert.matches('sched.yaml:7: schedule.jitter: expected a duration', text, 1, true)
    _, errs = load("sched.lua", [[
return pipeline {
  name = "s", timezone = "Europe/Nowhere", schedule = "0 0 30 2 *",
  tasks = { a = { run = function() end } },
}
]])
    text = pipeline.format_errors(errs)
    assert.matches('timezone: unknown time zone "Europe/Nowhere"', text, 1, true)
    assert.matches('schedule: day of month: "30" never happens in month "2"', text, 1, true)
    _, errs = load("sched2.yaml", "name: s\nschedule: { timezone: UTC, every: 1h }\n"
                   .. "tasks:\n  a: { run: 'return 1' }\n")
    text = pipeline.format_errors(errs)
    assert.matches('schedule: unknown property "every"', text, 1, true)
    _, errs = load("sched3.yaml", "name: s\nschedule: { timezone: UTC }\ntasks:\n  a: { run: 'return 1' }\n")
    assert.equal("schedule", errs[1].path)
    assert.matches("cron", errs[1].message, 1, true)
  end)

  it("normalizes the schedule on the loaded pipeline", function()
    local P = assert(load("s1.yaml", "name: s\nschedule: '@daily'\ntasks:\n  a: { run: 'return 1' }\n"))
    assert.same({ cron = "@daily", timezone = "UTC", catchup = "latest", max_catchup = 100,
                  jitter = 0 }, P.schedule)
    P = assert(load("s2.yaml", "name: s\ntimezone: Asia/Tokyo\nschedule: '0 2 * * *'\n"
                    .. "tasks:\n  a: { run: 'return 1' }\n"))
    assert.equal("Asia/Tokyo", P.schedule.timezone)
    P = assert(load("s3.lua", [[
return pipeline {
  name = "s", timezone = "Asia/Tokyo",
  schedule = { cron = "*/15 9-17 * * MON-FRI", timezone = "America/New_York",
               catchup = "all", max_catchup = 5, jitter = "1m30s" },
  tasks = { a = { run = function() end } },
}
]]))
    assert.same({ cron = "*/15 9-17 * * MON-FRI", timezone = "America/New_York",
                  catchup = "all", max_catchup = 5, jitter = 90 }, P.schedule)
    P = assert(load("s4.yaml", "name: s\ntasks:\n  a: { run: 'return 1' }\n"))
    assert.is_nil(P.schedule)
  end)

  it("collects every error with its path and line, in file order", function()
    local P, errs = load("bad.lua", [[
return pipeline {
  name = "bad",
  tasks = {
    load = task { retries = "three", run = function() end },
    x = task { after = { "extrct" }, run = function() end },
    y = task { timeout = "soon", run = function() end },
  },
}
]])
    assert.is_nil(P)
    local got = {}
    for _, e in ipairs(errs) do got[#got + 1] = e.line .. " " .. e.path end
    assert.same({ "4 tasks.load.retries", "5 tasks.x.after[1]", "6 tasks.y.timeout" }, got)
    assert.matches('unknown task "extrct"', pipeline.format_errors(errs), 1, true)
  end)

  it("refuses output and log caps that cannot fit in one result frame", function()
    local _, errs = load("big.yaml", "name: b\ndefaults: { log_max: 8MB }\ntasks:\n"
                         .. "  a: { output_max: 60MB, run: 'return 1' }\n  b: { run: 'return 1' }\n")
    assert.equal(1, #errs)
    assert.equal("tasks.a.output_max", errs[1].path)
    assert.equal(4, errs[1].line)
    assert.matches("at most 60 MB", errs[1].message)
    assert.is_truthy(load("ok.yaml", "name: b\ntasks:\n  a: { output_max: 59MB, run: 'return 1' }\n"))
  end)

  it("reports a dependency cycle", function()
    local _, errs = load("cyc.json", '{"name":"c","tasks":{"x":{"after":["y"],"run":"return 1"},'
                                     .. '"y":{"after":["x"],"run":"return 1"}}}')
    assert.equal("tasks", errs[1].path)
    assert.matches("dependency cycle", errs[1].message)
  end)

  it("kills a file that loads for too long, and the pool stays usable", function()
    local saved = pipeline.DEFINE_TIMEOUT_MS
    pipeline.DEFINE_TIMEOUT_MS = 300
    local P, errs = load("slow.lua", "while true do end")
    pipeline.DEFINE_TIMEOUT_MS = saved
    assert.is_nil(P)
    assert.matches("loading took longer than 300ms %(killed%)", errs[1].message)
    assert.is_truthy(load("ok.lua", 'return pipeline { name = "ok", tasks = { a = task { '
                          .. 'run = function() end } } }'))
  end)

  it("names the memory limit of the definition phase", function()
    local _, errs = load("big.lua", "local t = {} for i = 1, 1e8 do t[i] = i end")
    assert.matches("loading exceeded the memory limit of 256 MB", errs[1].message, 1, true)
  end)

  it("validates a chain of 100,000 tasks and finds a cycle at its end", function()
    local parts = { '"t1":{"after":["t100000"],"run":"return 1"}' }
    for i = 2, 100000 do
      parts[i] = string.format('"t%d":{"after":["t%d"],"run":"return 1"}', i, i - 1)
    end
    local _, errs = load("cyc.json", '{"name":"c","tasks":{' .. table.concat(parts, ",") .. "}}")
    assert.equal("tasks", errs[1].path)
    assert.equal("dependency cycle t1 -> t2 -> t3 -> t4 -> t5 -> t6 -> ... (99990 more) -> "
                 .. "t99997 -> t99998 -> t99999 -> t100000 -> t1", errs[1].message)
    parts[1] = '"t1":{"run":"return 1"}'
    local P = assert(load("chain.json", '{"name":"c","tasks":{' .. table.concat(parts, ",")
                          .. "}}"))
    assert.same({ "t99999" }, P.tasks.t100000.after)
  end)

  it("refuses an unknown file type and an unreadable file", function()
    local _, errs = pipeline.load(dir .. "/x.txt")
    assert.matches("unknown file type", errs[1].message)
    _, errs = pipeline.load(dir .. "/missing.lua", { exec = exec })
    assert.matches("cannot read", errs[1].message)
  end)
end)

describe("weir.pipeline params referring to the run's time", function()
  it("refuses an unknown ${reference} in a default, with its path", function()
    local P, errs = pipeline.load("inline.json", {
      source = '{"name":"p","params":{"d":{"type":"string","default":"${logical_day}"}},'
               .. '"tasks":{"a":{"run":"return 1"}}}', kind = "json" })
    assert.is_nil(P)
    assert.equal("params.d.default", errs[1].path)
    assert.matches("unknown reference ${logical_day}", errs[1].message, 1, true)
  end)
end)

describe("weir.pipeline.resolve_params", function()
  local P = { def = { params = {
    day = { type = "string", default = "2026-01-01" },
    n = { type = "integer", default = 3 },
    mode = { type = "string", enum = { "full", "delta" }, default = "full" },
  } } }

  it("coerces overrides and fills defaults", function()
    assert.same({ day = "x", n = 7, mode = "delta" },
                pipeline.resolve_params(P, { day = "x", n = "7", mode = "delta" }))
    assert.same({ day = "2026-01-01", n = 3, mode = "full" }, pipeline.resolve_params(P, {}))
  end)

  it("fills a default's ${logical_time} and ${logical_date} from the run's time", function()
    local T = { def = { timezone = "Europe/Berlin", params = {
      day = { type = "string", default = "${logical_date}" },
      at = { type = "string", default = "run at ${logical_time}" },
    } } }
    -- 2026-03-28 23:30 UTC is already the 29th in Berlin
    local lt = 1774740600000
    assert.same({ day = "2026-03-29", at = "run at 2026-03-28T23:30:00Z" },
                pipeline.resolve_params(T, {}, lt))
    assert.is_true(pipeline.defaults_use_time(T))
    assert.is_false(pipeline.defaults_use_time(P))
    -- no logical time: now
    local now = pipeline.resolve_params(T, {})
    assert.equal(os.date("!%Y-%m-%dT%H", os.time()), now.at:match("at (%d+%-%d+%-%d+T%d+)"))
    -- an override wins
    assert.equal("2020-01-01", pipeline.resolve_params(T, { day = "2020-01-01" }, lt).day)
  end)

  it("says what is wrong with a value", function()
    assert.same({ nil, 'param "n": expected integer, got "7.5" (decimal digits, within +-2^53)' },
                { pipeline.resolve_params(P, { n = "7.5" }) })
    assert.same({ nil, 'param "mode": must be one of "full", "delta", got "x"' },
                { pipeline.resolve_params(P, { mode = "x" }) })
    for _, bad in ipairs({ "nan", "inf", "-inf", "1e400", "0x10", "1e", "--5", "" }) do
      local v, e = pipeline.resolve_params({ def = { params = { x = { type = "number" } } } },
                                           { x = bad })
      assert.is_nil(v, bad)
      assert.matches('param "x": expected number', e, 1, true)
    end
    for _, bad in ipairs({ "9007199254740993", "1e3", "0x10", "1.0" }) do
      assert.is_nil((pipeline.resolve_params(P, { n = bad })), bad)
    end
    assert.same({ nil, 'param "day": expected string, got "\\xff" (not valid UTF-8)' },
                { pipeline.resolve_params(P, { day = "\255" }) })
    assert.equal(-1.5e-3, pipeline.resolve_params({ def = { params = { x = { type = "number" } } } },
                                                  { x = "-1.5e-3" }).x)
    local _, err = pipeline.resolve_params(P, { nope = "1" })
    assert.matches('unknown param "nope"', err, 1, true)
  end)

  it("takes dates, times, patterns, bounds and lists", function()
    local Q = { def = { params = {
      day = { type = "date", minimum = "2020-01-01", default = "2026-01-31" },
      at = { type = "datetime", default = "2026-01-31T10:00:00Z" },
      code = { type = "string", pattern = "^[A-Z]{3}$", default = "ABC" },
      n = { type = "integer", minimum = 1, maximum = 10, default = 5 },
      ids = { type = "integer", list = true, default = { 1, 2 } },
    } } }
    assert.same({ day = "2024-02-29", at = "2026-03-01T23:59:59.5+01:00", code = "XYZ", n = 10,
                  ids = { 3, 4 } },
                pipeline.resolve_params(Q, { day = "2024-02-29", code = "XYZ", n = "10",
                                             at = "2026-03-01T23:59:59.5+01:00", ids = "3, 4" }))
    assert.same({ 1, 2 }, pipeline.resolve_params(Q, {}).ids)
    local function why(k, v) return select(2, pipeline.resolve_params(Q, { [k] = v })) end
    assert.equal('param "day": expected date, got "2023-02-29" (YYYY-MM-DD)',
                 why("day", "2023-02-29"))
    assert.equal('param "day": must be at least "2020-01-01", got "2019-12-31"',
                 why("day", "2019-12-31"))
    assert.matches('param "at": expected datetime, got "2026-01-01T10:00:00"',
                   why("at", "2026-01-01T10:00:00"), 1, true)
    assert.equal('param "code": must match the pattern "^[A-Z]{3}$", got "abc"', why("code", "abc"))
    assert.equal('param "n": must be at most 10, got 11', why("n", "11"))
    assert.equal('param "n": must be at least 1, got 0', why("n", "0"))
    assert.matches('param "ids": item 2: expected integer, got "x"', why("ids", "1,x"), 1, true)
  end)

  it("refuses a default that breaks its own param's rules when the file loads", function()
    local P2, errs = pipeline.load("p.lua", { source = [[
return pipeline { name = "p", params = { n = { type = "integer", maximum = 3, default = 5 },
                                         c = { type = "string", pattern = "(" } },
                  tasks = { a = task { run = function() end } } }]] })
    assert.is_nil(P2)
    local text = pipeline.format_errors(errs)
    assert.matches("params.n.default: must be at most 3, got 5", text, 1, true)
    assert.matches("params.c.pattern", text, 1, true)
  end)
end)
