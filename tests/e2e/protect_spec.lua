-- End-to-end: what tasks may not touch (docs/adr/0013). weir.yaml, the
-- secret files it reads, weir.lock and the pipeline file sit in the
-- pipeline's folder, a writable root, and stay out of reach through every
-- path the broker serves: sinks, dead letters, SQLite, symlinks and hard
-- links made outside weir.
local H = require("helpers")

local YAML = [[
connections:
  cache: { type: redis, url: "redis://:${file:secrets/redis.pw}@127.0.0.1:6379/0" }
  wh: { type: postgres, host: 127.0.0.1, user: u, password: "${file:top.pw}" }
]]
local SECRET, SECRET2 = "s3cret-top-pw", "s3cret-redis-pw"

describe("files a task may not touch", function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    H.write(dir .. "/weir.yaml", YAML)
    H.write(dir .. "/top.pw", SECRET .. "\n")
    H.write(dir .. "/secrets/redis.pw", SECRET2 .. "\n")
    H.write(dir .. "/in.csv", "a,b\n1,2\n")
    H.write(dir .. "/bad.csv", "a,b\n1,2,3\n")
    -- made outside weir, before the run
    assert(H.succeeds("cd " .. H.q(dir) .. " && ln -s weir.yaml link.yaml && ln weir.yaml hard.yaml"
                      .. " && ln -s top.pw link.pw && ln top.pw hard.pw"))
  end)
  after_each(function() H.cleanup(dir) end)

  -- Run a pipeline whose tasks are name = body (the body of run(ctx));
  -- every task must fail. Returns the run.
  local function attack(tasks)
    local parts = {}
    for name, body in pairs(tasks) do
      parts[#parts + 1] = string.format("%s = task { run = function(ctx) %s end }", name, body)
    end
    local code, r, err = H.run_pipeline(dir, 'return pipeline { name = "evil", tasks = { '
                                        .. table.concat(parts, ", ") .. " } }")
    assert.equal(1, code, err)
    for name in pairs(tasks) do
      assert.equal("failed", H.task(r, name).state, name)
    end
    return r
  end

  it("refuses writing weir.yaml, weir.lock and the pipeline file, by any name", function()
    local before = H.read(dir .. "/weir.yaml")
    local r = attack({
      jsonl = 'return ctx.rows({ { a = 1 } }):to_jsonl("weir.yaml")',
      csv = 'return ctx.rows({ { a = 1 } }):to_csv("weir.yaml")',
      lock = 'return ctx.rows({ { a = 1 } }):to_jsonl("weir.lock")',
      pipe = 'return ctx.rows({ { a = 1 } }):to_jsonl("p.lua")',
      sq = 'return ctx.sqlite("weir.yaml"):exec("CREATE TABLE t (x)")',
      sqlink = 'return ctx.sqlite("link.yaml"):exec("CREATE TABLE t (x)")',
      sqhard = 'return ctx.sqlite("hard.yaml"):exec("CREATE TABLE t (x)")',
      dl = 'return ctx.csv("bad.csv", { dead_letter = "weir.yaml" }):count()',
      dlhard = 'return ctx.csv("bad.csv", { dead_letter = "hard.yaml" }):count()',
      dlpipe = 'return ctx.csv("bad.csv", { dead_letter = "p.lua" }):count()',
    })
    for _, name in ipairs({ "jsonl", "csv", "lock", "pipe", "dl", "dlhard", "dlpipe" }) do
      assert.matches("is protected", H.task(r, name).error, 1, true)
    end
    assert.equal(before, H.read(dir .. "/weir.yaml"))
    assert.is_nil(H.read(dir .. "/weir.lock"))
    assert.matches('name = "evil"', H.read(dir .. "/p.lua"), 1, true)
    -- no temporary file of a refused sink is left behind
    assert.equal("", H.output("cd " .. H.q(dir) .. " && ls | grep tmp- || true"))
  end)

  it("a file sink named by a symbolic link replaces the link, never its target", function()
    -- a dead-letter file is written like any file sink: a temporary file
    -- renamed over the name, which here is a link to weir.yaml
    local before = H.read(dir .. "/weir.yaml")
    local code, r, err = H.run_pipeline(dir, 'return pipeline { name = "evil", tasks = { '
      .. 'dllink = task { run = function(ctx) '
      .. 'return ctx.csv("bad.csv", { dead_letter = "link.yaml" }):count() end } } }')
    assert.equal(0, code, err)
    assert.equal("success", H.task(r, "dllink").state)
    assert.equal(before, H.read(dir .. "/weir.yaml"))
    assert.matches("bad.csv", H.read(dir .. "/link.yaml"), 1, true)
    assert.equal("", H.output("cd " .. H.q(dir) .. " && find . -maxdepth 1 -type l -name link.yaml"))
  end)

  it("refuses reading weir.yaml and its secret files, by any name and any reader", function()
    local r = attack({
      csv = 'return ctx.csv("top.pw"):count()',
      jsonl = 'return ctx.jsonl("secrets/redis.pw"):count()',
      dl = 'return ctx.csv("top.pw", { dead_letter = "dl.jsonl" }):count()',
      link = 'return ctx.csv("link.pw", { dead_letter = "dl2.jsonl" }):count()',
      hard = 'return ctx.csv("hard.pw", { dead_letter = "dl3.jsonl" }):count()',
      yaml = 'return ctx.csv("weir.yaml", { dead_letter = "dl4.jsonl" }):count()',
      sq = 'return ctx.sqlite("top.pw"):query("SELECT 1"):count()',
    })
    for _, name in ipairs({ "csv", "jsonl", "dl", "link", "hard", "yaml" }) do
      assert.matches("is protected", H.task(r, name).error, 1, true)
    end
    local everything = H.output("cat " .. H.q(dir) .. "/dl*.jsonl 2>/dev/null")
                       .. H.output("cd " .. H.q(dir) .. " && env WEIR_HOME=.weir "
                                   .. H.q(H.bin) .. " show " .. r.run_id .. " --json")
    assert.is_nil(everything:find(SECRET, 1, true))
    assert.is_nil(everything:find(SECRET2, 1, true))
    assert.is_nil(everything:find(SECRET:reverse(), 1, true))
  end)

  it("still lets tasks read and write their own files beside them", function()
    local code, r, err = H.run_pipeline(dir, [[
      return pipeline { name = "ok", tasks = { t = task { run = function(ctx)
        ctx.csv("in.csv"):to_jsonl("out.jsonl")
        return ctx.jsonl("out.jsonl"):count()
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.equal(1, H.task(r, "t").output)
  end)
end)

describe("${file:} references", function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    H.write(dir .. "/outside/x.pw", "outside-pw\n")
    H.write(dir .. "/proj/p.lua", 'return pipeline { name = "p", tasks = { a = task { '
                                  .. 'run = function(ctx) return ctx.csv("../outside/x.pw"):count() end } } }')
  end)
  after_each(function() H.cleanup(dir) end)

  local function yaml(ref)
    H.write(dir .. "/proj/weir.yaml", 'connections:\n  c: { type: redis, url: "redis://:${file:'
                                      .. ref .. '}@127.0.0.1:6379/0" }\n')
  end

  it("are confined to the config's folder, symlinks resolved", function()
    for _, ref in ipairs({ "../outside/x.pw", dir .. "/outside/x.pw", "/etc/hostname" }) do
      yaml(ref)
      local code, _, err = H.weir(dir .. "/proj", "run p.lua")
      assert.equal(1, code, ref)
      assert.matches("outside the config's folder and WEIR_SECRET_DIRS", err, 1, true)
    end
    assert(H.succeeds("cd " .. H.q(dir .. "/proj") .. " && ln -s ../outside/x.pw link.pw"))
    yaml("link.pw")
    local code, _, err = H.weir(dir .. "/proj", "run p.lua")
    assert.equal(1, code)
    assert.matches("outside the config's folder and WEIR_SECRET_DIRS", err, 1, true)
  end)

  it("may name a file of WEIR_SECRET_DIRS, which tasks cannot reach even inside a root", function()
    yaml(dir .. "/outside/x.pw")
    local env = { WEIR_SECRET_DIRS = dir .. "/outside", WEIR_ROOTS = dir }
    local code, _, err = H.weir(dir .. "/proj", "run p.lua", env)
    assert.equal(1, code, err)
    local r = H.show(dir .. "/proj", H.last_run(dir .. "/proj"))
    assert.matches("is inside weir's state folder or a secrets folder", H.task(r, "a").error,
                   1, true)
  end)
end)
