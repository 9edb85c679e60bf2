-- The template mechanism through the real binary: the three ways to use
-- a template, errors with their paths, version pins, a team folder
-- pinned by weir.lock, the templates commands, weir init, and
-- docs/templates.md kept equal to the templates' metadata.
local H = require("helpers")

local GREET = [[
-- a team template
return pipeline {
  name = "greet",
  template = { version = "%s", summary = "say hello" },
  params = {
    who = { type = "string" },
    times = { type = "integer", default = 1 },
    tone = { type = "string", enum = { "plain", "loud" }, default = "plain" },
  },
  tasks = {
    hello = task { run = function(ctx)
      local s = string.rep("%s " .. ctx.params.who, ctx.params.times, ",")
      return ctx.params.tone == "loud" and s:upper() or s
    end },
  },
}
]]

local PAIR = [[
return pipeline {
  name = "pair",
  template = { version = "1.0.0", summary = "two tasks in a row" },
  params = { n = { type = "integer" } },
  tasks = {
    first = task { run = function(ctx) return ctx.params.n end },
    second = task { after = { "first" }, run = function(ctx) return ctx.inputs.first + 1 end },
  },
}
]]

local function team(dir)
  H.write(dir .. "/weir.yaml", "templates: [team]\n")
  H.write(dir .. "/team/greet/template.lua", GREET:format("1.2.0", "hello"))
  H.write(dir .. "/team/greet/v2.lua", GREET:format("2.0.0", "hi"))
  H.write(dir .. "/team/pair/template.lua", PAIR)
  H.write(dir .. "/team/pair/pair_spec.lua", "error('a spec is not a template')")
end

local function output(run, task)
  local t = H.task(run, task)
  return t and t.attempt_list[#t.attempt_list].output
end

describe("templates", function()
  local dir
  before_each(function() dir = H.tmpdir(); team(dir) end)
  after_each(function() H.cleanup(dir) end)

  it("refuses a team folder's templates until weir.lock pins them, and a changed one after", function()
    local src = 'return pipeline { name = "p", tasks = { g = task { uses = "greet@1", with = { who = "ada" } } } }'
    H.write(dir .. "/p.lua", src)
    local code, _, err = H.weir(dir, "validate p.lua")
    assert.equal(1, code)
    assert.matches("tasks.g.uses: template greet@1.2.0 from .-team/greet is not pinned: no valid weir.lock", err)
    code, _, err = H.weir(dir, "templates lock")
    assert.equal(0, code, err)
    assert.matches('"greet@1.2.0": {"path":"team/greet/template.lua","sha256":"%x+"}',
                   H.read(dir .. "/weir.lock"))
    code, _, err = H.weir(dir, "run p.lua --quiet")
    assert.equal(0, code, err)
    -- an edit is noticed, never picked up silently
    H.write(dir .. "/team/greet/template.lua", GREET:format("1.2.0", "howdy"))
    code, _, err = H.weir(dir, "run p.lua --quiet")
    assert.equal(1, code)
    assert.matches("template greet@1.2.0 %(.-team/greet/template.lua%) changed since weir.lock", err)
    assert.equal(0, (H.weir(dir, "templates lock")))
    code, _, err = H.weir(dir, "run p.lua --quiet")
    assert.equal(0, code, err)
    assert.equal("howdy ada", output(H.show(dir, H.last_run(dir)), "g"))
  end)

  describe("with weir.lock written", function()
    before_each(function() assert.equal(0, (H.weir(dir, "templates lock"))) end)

    it("use one as a task, with a run param passed through, pinned by major or exact version", function()
      local code, run, err = H.run_pipeline(dir, [[
return pipeline {
  name = "p",
  params = { who = { type = "string", default = "grace" } },
  tasks = {
    one = task { uses = "greet@1", with = { who = "${params.who}", times = 2 } },
    two = task { uses = "greet@2", with = { who = "ada", tone = "loud" }, retries = 1 },
    exact = task { uses = "greet@1.2.0", with = { who = "x" } },
  },
}]], "--param who=linus")
      assert.equal(0, code, err)
      assert.equal("hello linus,hello linus", output(run, "one"))
      assert.equal("HI ADA", output(run, "two"))
      assert.equal("hello x", output(run, "exact"))
    end)

    it("include one as a group: tasks prefixed, after wired to and from the group", function()
      local code, run, err = H.run_pipeline(dir, [[
return pipeline {
  name = "p",
  tasks = {
    start = task { run = function() return "s" end },
    finish = task { after = { "g" }, run = function(ctx)
      local names = {}
      for k in pairs(ctx.inputs) do names[#names + 1] = k end
      table.sort(names)
      return table.concat(names, ",") .. "=" .. ctx.inputs["g.second"]
    end },
    one_member = task { after = { "g.first" }, run = function(ctx) return ctx.inputs["g.first"] end },
  },
  include = { g = template("pair@1", { n = 41 }, { after = { "start" } }) },
}]])
      assert.equal(0, code, err)
      assert.equal("g.first,g.second=42", output(run, "finish"))
      assert.equal(41, output(run, "one_member"))
      -- the group's entry waited for start: its attempt began after start ended
      local first, start = H.task(run, "g.first"), H.task(run, "start")
      assert.is_true(first.attempt_list[1].started_at >= start.attempt_list[1].finished_at)
    end)

    it("reports wrong or missing params, pins and names with their paths", function()
      H.write(dir .. "/bad.lua", [[
return pipeline {
  name = "bad",
  params = { n = { type = "string", default = "1" } },
  tasks = {
    a = task { uses = "greet@1", with = { times = "two", tone = "quiet", colour = 1 } },
    b = task { uses = "greet" },
    c = task { uses = "nosuch@1" },
    d = task { uses = "greet@1.9.0", with = { who = "x" } },
    e = task { uses = "pair@1", with = { n = 1 } },
    f = task { },
    h = task { uses = "greet@1", run = function() end },
  },
  include = { g = template("pair@1", { n = "${params.n}" }) },
}]])
      local code, out, err = H.weir(dir, "validate bad.lua --json")
      assert.equal(1, code, err)
      local got = {}
      for _, e in ipairs(require("weir.json").decode(out).errors) do got[e.path] = e.message end
      assert.equal('must be one of "plain", "loud", got "quiet"', got["tasks.a.with.tone"])
      assert.equal('expected integer, got "two"', got["tasks.a.with.times"])
      assert.equal("required by template greet@1.2.0", got["tasks.a.with.who"])
      assert.equal("unknown param of template greet (it takes: times, tone, who)", got["tasks.a.with.colour"])
      assert.equal("pin a version: greet@2 (or greet@2.0.0)", got["tasks.b.uses"])
      assert.matches('no template "nosuch" %(known: .*greet.*%)', got["tasks.c.uses"])
      assert.equal("no version of template greet matches 1.9.0 (available: 2.0.0, 1.2.0)", got["tasks.d.uses"])
      assert.matches("template pair has 2 tasks %(first, second%): include it as a group", got["tasks.e.uses"])
      assert.matches("a task needs run", got["tasks.f"])
      assert.matches("either run or uses", got["tasks.h"])
      assert.equal("${params.n} is a param of type string; n of template pair takes integer",
                   got["include.g.with.n"])
    end)
  end)

  it("resume finishes an interrupted run that uses templates, loading nothing twice", function()
    H.write(dir .. "/a.csv", "id,v\n1,a\n2,b\n")
    H.write(dir .. "/p.lua", [[
return pipeline {
  name = "rs",
  tasks = {
    load = task { uses = "csv_to_table@1", with = { path = "a.csv", target = "sqlite:o.db", table = "t" } },
    slow = task { after = { "load" }, run = function(ctx)
      local t0 = os.clock()
      while os.clock() - t0 < 2 do end
      return ctx.inputs.load.rows
    end },
  },
  include = { g = template("csv_to_table@1", { path = "a.csv", target = "sqlite:o.db", table = "t2" },
                           { after = { "slow" } }) },
}]])
    local pid = H.spawn(dir, "run p.lua --quiet", dir .. "/run.log")
    local id = H.wait_for(function()
      local rid = H.last_run(dir)
      local run = rid and H.show(dir, rid)
      local t = run and H.task(run, "slow")
      return t and t.state == "running" and rid
    end, 30)
    assert.truthy(id, "the slow task did not start")
    os.execute("kill -9 " .. pid)
    H.wait_dead(pid)
    local code, _, err = H.weir(dir, "resume " .. id .. " --quiet")
    assert.equal(0, code, err)
    local run = H.show(dir, id)
    assert.equal(2, output(run, "slow"))
    assert.equal("success", H.task(run, "g.load").state)
    assert.equal("2|2", H.output("sqlite3 " .. H.q(dir .. "/o.db")
      .. " 'SELECT count(*) FROM t; SELECT count(*) FROM t2'"):gsub("\n", "|"):gsub("|$", ""))
  end)

  it("runs a library template whole, refusing a missing param by name", function()
    H.write(dir .. "/in.csv", "id,v\n1,a\n")
    local code, _, err = H.weir(dir, "run template:csv_to_table --param path=in.csv --param target=sqlite:o.db")
    assert.equal(2, code)
    assert.matches('param "table" is required', err)
    code, _, err = H.weir(dir, "run template:nosuch")
    assert.equal(1, code)
    assert.matches('no template "nosuch"', err)
  end)

  it("lists, shows and starts pipelines from templates", function()
    assert.equal(0, (H.weir(dir, "templates lock")))
    local code, out = H.weir(dir, "templates list")
    assert.equal(0, code)
    for _, n in ipairs({ "csv_to_table", "incremental_copy", "scd2", "dedupe_latest", "quality_gate",
                         "partitioned_export", "redis_stream_to_pg", "table_to_redis",
                         "daily_aggregate", "retention" }) do
      assert.matches("\n?" .. n .. " +1%.0%.0 +built%-in", out)
    end
    assert.matches("greet +2%.0%.0 +folder +say hello", out)
    code, out = H.weir(dir, "templates show incremental_copy")
    assert.equal(0, code)
    assert.matches("| `watermark` | string | yes |", out, 1, true)
    assert.matches("- Writes: `target_table`", out, 1, true)
    code, out = H.weir(dir, "templates show csv_to_table@1 --json")
    assert.equal(0, code)
    local doc = require("weir.json").decode(out)
    assert.same({ "path", "table", "target" }, { unpack(doc.params.required) })
    assert.same({ "auto", "csv", "jsonl" }, { unpack(doc.params.properties.format.enum) })
    assert.is_false(doc.params.additionalProperties)
    assert.matches("^%x+$", doc.sha256)
    for _, name in ipairs({ "incremental_copy", "pair" }) do
      local err
      code, _, err = H.weir(dir, "templates new " .. name .. " new")
      assert.equal(0, code, err)
      code, out, err = H.weir(dir, "validate new/" .. name .. ".lua")
      assert.equal(0, code, out .. err)
    end
    assert.matches("connections:", H.read(dir .. "/new/weir.yaml"))
    assert.equal(1, (H.weir(dir, "templates new incremental_copy new")))
  end)

  it("keeps docs/templates.md equal to the templates' metadata", function()
    local d = H.tmpdir()
    local code, out, err = H.weir(d, "templates docs")
    H.cleanup(d)
    assert.equal(0, code, err)
    assert.equal(out, H.read(H.src .. "/docs/templates.md"),
                 "docs/templates.md is stale: weir templates docs > docs/templates.md")
  end)
end)

describe("weir init", function()
  it("makes a project whose example pipeline runs and whose test can fail", function()
    local dir = H.tmpdir()
    local code, out = H.weir(dir, "init proj")
    assert.equal(0, code, out)
    local p = dir .. "/proj"
    assert.equal(".weir/\nout/\ndead_letters/\n", H.read(p .. "/.gitignore"))
    assert.is_truthy(H.read(p .. "/weir.yaml"))
    local _, err
    code, _, err = H.weir(p, "run pipelines/orders.lua --quiet")
    assert.equal(0, code, err)
    code, _, err = H.weir(p, "run pipelines/orders_test.lua --quiet")
    assert.equal(0, code, err)
    H.write(p .. "/pipelines/data/orders.csv", "id,customer,amount\n1,ada,1\n")
    os.remove(p .. "/pipelines/out/orders.db")
    assert.equal(0, (H.weir(p, "run pipelines/orders.lua --quiet")))
    assert.equal(1, (H.weir(p, "run pipelines/orders_test.lua --quiet")))
    assert.equal(1, (H.weir(dir, "init proj")))
    H.cleanup(dir)
  end)
end)
