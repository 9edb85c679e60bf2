-- Fix the code, run again: weir retry (and resume --reload) run the
-- failed or named tasks and what follows them in the same run, with the
-- outputs of what succeeded upstream, and record the new source as a
-- version of the run; weir show and weir runs find what is needed.
local H = require("helpers")
local json = require("weir.json")

local BROKEN = [[
return pipeline { name = "fixme", defaults = { retries = 1, retry_delay = "10ms" }, tasks = {
  z_extract = task { run = function() return { n = 41 } end },
  b_transform = task { after = { "z_extract" }, run = function(ctx)
    error("bug in transform") end },
  a_load = task { after = { "b_transform" }, run = function(ctx)
    return ctx.inputs.b_transform + 0 end },
} }
]]
local FIXED = BROKEN:gsub('error%("bug in transform"%)', "return ctx.inputs.z_extract.n + 1")

local function show(dir, args)
  local code, out, err = H.weir(dir, "show " .. args .. " --json")
  assert.equal(0, code, err)
  return json.decode(out)
end

describe("weir retry", function()
  local dir, id
  before_each(function()
    dir = H.tmpdir()
    H.write(dir .. "/p.lua", BROKEN)
    local code, _, err = H.weir(dir, "run p.lua")
    assert.equal(1, code, err)
    id = H.last_run(dir)
  end)
  after_each(function() H.cleanup(dir) end)

  it("says the stored version is used when the file changed, and --reload runs the fix", function()
    H.write(dir .. "/p.lua", FIXED)
    local code, _, err = H.weir(dir, "retry " .. id)
    assert.equal(1, code)
    assert.matches("p.lua changed since run " .. id .. " stored it; the stored version is used",
                   err, 1, true)
    -- a unique prefix names the run
    code, _, err = H.weir(dir, "retry " .. id:sub(1, 20) .. " --reload")
    assert.equal(0, code, err)
    assert.matches("now runs version 2 of", err, 1, true)
    local run = show(dir, id)
    assert.equal("success", run.status)
    assert.equal(2, run.version)
    assert.equal(2, #run.versions)
    -- the upstream task kept its output and did not run again
    local z = H.task(run, "z_extract")
    assert.equal(1, z.attempts)
    local b = H.task(run, "b_transform")
    assert.equal(42, b.output)
    assert.equal(5, b.attempts)
    assert.equal(1, b.attempt_list[1].version)
    assert.equal(2, b.attempt_list[5].version)
    assert.equal(42, H.task(run, "a_load").output)
    -- in the text, too
    local _, text = H.weir(dir, "show " .. id)
    assert.matches("attempt 5 success (version 2)", text, 1, true)
  end)

  it("runs a named task again with what follows it, even in a run that succeeded", function()
    H.write(dir .. "/p.lua", FIXED)
    assert.equal(0, (H.weir(dir, "resume last --reload")))
    local code, _, err = H.weir(dir, "retry last --task b_transform")
    assert.equal(0, code, err)
    local run = show(dir, "last")
    assert.equal(1, H.task(run, "z_extract").attempts)
    assert.equal(2 + 1 + 1, H.task(run, "b_transform").attempts)
    assert.equal(2, H.task(run, "a_load").attempts)
  end)

  it("leaves the run as it was when the task or the new file is wrong", function()
    local code, _, err = H.weir(dir, "retry " .. id .. " --task nope")
    assert.equal(2, code)
    assert.matches('--task: no task "nope" in fixme (it has a_load, b_transform, z_extract)',
                   err, 1, true)
    H.write(dir .. "/p.lua", "return pipeline {")
    code, _, err = H.weir(dir, "retry " .. id .. " --reload")
    assert.equal(1, code)
    assert.matches("p.lua", err, 1, true)
    local run = show(dir, id)
    assert.equal("failed", run.status)
    assert.is_nil(run.supervisor_gone)
    assert.equal(0, #run.versions)
  end)
end)

describe("weir show and weir runs", function()
  local dir, first, second
  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/p.lua", BROKEN)
    H.write(dir .. "/q.lua", [[return pipeline { name = "ok", tasks = {
      t = task { run = function() return 1 end } } }]])
    assert.equal(1, (H.weir(dir, "run p.lua")))
    first = H.last_run(dir)
    assert.equal(0, (H.weir(dir, "run q.lua")))
    second = H.last_run(dir)
  end)
  teardown(function() H.cleanup(dir) end)

  it("lists tasks in the order they started, and filters them", function()
    local _, text = H.weir(dir, "show " .. first)
    local z, b, a = text:find("z_extract", 1, true), text:find("b_transform", 1, true),
                    text:find("a_load", 1, true)
    assert.is_true(z < b and b < a, text)
    local run = show(dir, first .. " --failed")
    assert.equal(2, #run.tasks)
    assert.is_nil(H.task(run, "z_extract"))
    run = show(dir, first .. " --task b_transform")
    assert.equal(1, #run.tasks)
    assert.equal(2, #run.tasks[1].attempt_list)
    local code, _, err = H.weir(dir, "show " .. first .. " --task nope")
    assert.equal(3, code)
    assert.matches('has no task "nope"', err, 1, true)
  end)

  it("takes last and unique prefixes, and says when a prefix is ambiguous", function()
    assert.equal(second, show(dir, "last").run_id)
    local code, _, err = H.weir(dir, "show 2026")
    if first:sub(1, 4) == second:sub(1, 4) then
      assert.equal(3, code)
      assert.matches("is ambiguous", err, 1, true)
    end
    code, _, err = H.weir(dir, "show zzzzzz")
    assert.equal(3, code)
    assert.matches('no run "zzzzzz"', err, 1, true)
  end)

  it("filters runs by status and pipeline, newest first, with RFC 3339 times", function()
    local _, out = H.weir(dir, "runs --json --status failed")
    local list = json.decode(out)
    assert.equal(1, #list)
    assert.equal(first, list[1].run_id)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", list[1].created_at)
    _, out = H.weir(dir, "runs --json --pipeline ok")
    list = json.decode(out)
    assert.equal(1, #list)
    assert.equal("ok", list[1].pipeline)
    _, out = H.weir(dir, "runs --json --limit 1")
    assert.equal(second, json.decode(out)[1].run_id)
    local code, _, err = H.weir(dir, "runs --status bogus")
    assert.equal(2, code)
    assert.matches("--status must be queued, running", err, 1, true)
  end)

  it("counts a resumed run's working time, not the gap before it", function()
    os.execute("sleep 1.2")
    H.write(dir .. "/p.lua", FIXED)
    assert.equal(0, (H.weir(dir, "retry " .. first .. " --reload")))
    local run = show(dir, first)
    local span = H.ms(run.finished_at) - H.ms(run.started_at)
    assert.is_true(run.duration_s * 1000 < span - 1000, run.duration_s .. " of " .. span)
  end)
end)
