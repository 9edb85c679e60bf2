-- weir repl: piped scripts, and a real terminal (tests/lua/pty.lua) for
-- typing, multi-line chunks, completion, history across sessions, Ctrl-C
-- and escape attempts typed at the prompt. The PostgreSQL parts are in
-- tests/integration/repl_spec.lua.
local H = require("helpers")
local pty = require("pty")

local terminals = {}

-- `weir repl ARGS` in dir on a new terminal (killed after the spec).
local function repl(dir, args, env)
  local words = "WEIR_HOME=" .. H.q(dir .. "/.weir") .. " TERM=xterm PAGER=cat"
  for k, v in pairs(env or {}) do words = words .. " " .. k .. "=" .. H.q(v) end
  local p = pty.spawn(string.format("cd %s && exec env %s %s repl %s", H.q(dir), words,
                                    H.q(H.bin), args or ""))
  terminals[#terminals + 1] = p
  p:expect("weir> ")
  return p
end

-- Type line and wait for the next prompt; returns what came between.
local function typed(p, line)
  p:type(line .. "\r")
  return p:expect("weir> ")
end

describe("weir repl with stdin not a terminal", function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    H.write(dir .. "/data/x.csv", "id,name\n1,alice\n2,\n3,carol\n")
    H.write(dir .. "/weir.yaml", "connections: {}\n")
  end)
  after_each(function() H.cleanup(dir) end)

  local function script(text, args)
    H.write(dir .. "/in.lua", text)
    return H.weir(dir, "repl " .. (args or "") .. " <in.lua")
  end

  it("prints each chunk's value: expressions without return, tables, streams", function()
    local code, out, err = script([[
x = 20 + 1
x * 2
t = { name = "a", list = { 1, 2, { deep = true } } }
t.me = t
t
function twice(n)
  return n * 2
end
twice(x)
print("printed", x)
ctx.csv("data/x.csv")
ctx.rows({ { n = 1 }, { n = 2 } }):map(function(r) r.n = r.n * 10 return r end)
]])
    assert.equal(0, code, err)
    assert.matches("\n42\n", "\n" .. out, 1, true)
    assert.matches('{ list = { 1, 2, { deep = true } }, me = <cycle: table 1>, name = "a" }',
                   out, 1, true)
    assert.matches("printed\t21", out, 1, true)
    -- a stream: names, types, aligned, NULL-less empty text kept apart
    assert.matches("id     | name\nstring | string\n-------+-------\n1      | alice\n2      |\n"
                   .. "3      | carol\n(3 rows)", out, 1, true)
    assert.matches("n\nnumber\n------\n    10\n    20\n(2 rows)", out, 1, true)
  end)

  it("shows the first rows of a long stream, says more exist, and .last shows them all", function()
    local code, out, err = script([[
rows = {}
for i = 1, 45 do rows[i] = { i = i, s = string.rep("y", 60) } end
ctx.rows(rows)
.last
]])
    assert.equal(0, code, err)
    assert.matches("(20 rows, more exist: .last shows them all)", out, 1, true)
    -- long values cut with a marker
    assert.matches(string.rep("y", 39) .. "\226\128\166", out, 1, true)
    -- .last: all 45
    local last = out:sub(out:find("more exist", 1, true), -1)
    assert.matches("\n%s+45 | y", last)
    assert.matches("\n%s+1 | y", last)
  end)

  it("switches modes: json, jsonl, csv", function()
    local code, out, err = script([[
.mode jsonl
ctx.csv("data/x.csv")
.mode csv
ctx.rows({ { a = "x,y", b = 1 } })
.mode json
{ k = "v" }
]])
    assert.equal(0, code, err)
    assert.matches('{"id":"1","name":"alice"}\n{"id":"2","name":""}', out, 1, true)
    assert.matches('a,b\n"x,y",1', out, 1, true)
    assert.matches('{"k":"v"}', out, 1, true)
  end)

  it("stops at the first error with exit 1, and names the line", function()
    local code, out, err = script("a = 1\nundefined_thing.x = 1\nprint('never')\n")
    assert.equal(1, code)
    assert.matches("repl:1: undefined global 'undefined_thing'", err, 1, true)
    assert.not_matches("never", out, 1, true)
    local code2, _, err2 = script("for i = 1, 2 do\n")
    assert.equal(1, code2)
    assert.matches("'end' expected", err2, 1, true)
  end)

  it("keeps the lock-down of a task: no io, ffi, os.execute, nor weir.yaml", function()
    for _, line in ipairs({ 'io.open("/etc/passwd")', 'require("ffi")', 'os.execute("id")',
                            'ctx.csv("weir.yaml"):collect()', 'ctx.csv("/etc/passwd")',
                            'debug.getinfo(1)', 'load(string.dump(print))' }) do
      local code, out, err = script(line .. "\n")
      assert.equal(1, code, line .. ": " .. out)
      assert.matches("^error: ", err, nil, false)
    end
  end)

  it("ends a command at its deadline and keeps the session", function()
    local code, out, err = script("x = 7\nfor i = 1, 1e15 do end\n", "--timeout 1s")
    assert.equal(1, code)
    assert.matches("exceeded its deadline of 1.0s", err, 1, true)
    assert.equal("", out)
  end)

  it("holds the session to its memory cap", function()
    local code, _, err = script("t = {} for i = 1, 1e8 do t[i] = string.rep('x', 100) .. i end\n",
                                "--memory 64MB")
    assert.equal(1, code)
    assert.matches("memory", err, 1, true)
  end)

  it("loads a pipeline: its tasks run with the session's ctx; .tasks and .validate", function()
    H.write(dir .. "/p.lua", [[
      return pipeline {
        name = "rp",
        params = { n = { type = "integer", default = 3 } },
        tasks = {
          a = task { run = function(ctx) return { n = ctx.params.n } end },
          b = task { after = { "a" }, run = function(ctx) return ctx.inputs.a.n * 2 end },
        },
      }
    ]])
    local code, out, err = script([[
tasks.a()
ctx.params.n
.tasks
.validate
]], "p.lua --param n=5")
    assert.equal(0, code, err)
    assert.matches("{ n = 5 }", out, 1, true)
    assert.matches("\n5\n", out, 1, true)
    assert.matches("b%s+after a", out)
    assert.matches("p.lua: valid (pipeline rp, 2 tasks)", out, 1, true)
  end)

  it(".run runs one task for real, inputs from the latest successful run or --input", function()
    H.write(dir .. "/p.lua", [[
      return pipeline {
        name = "rr",
        tasks = {
          a = task { run = function() return { v = 20 } end },
          b = task { after = { "a" }, run = function(ctx) return ctx.inputs.a.v + 1 end },
        },
      }
    ]])
    assert.equal(0, (H.weir(dir, "run p.lua")))
    local code, out, err = script(".run b\n.run b --input a={\"v\":100}\n.runs\n", "p.lua")
    assert.equal(0, code, err)
    assert.matches("success\noutput: 21", out, 1, true)
    assert.matches("success\noutput: 101", out, 1, true)
    local id = out:match("run (%S+): success")
    local _, shown = H.weir(dir, "show " .. id)
    assert.matches("a%s+skipped", shown)
    assert.matches("b%s+success", shown)
  end)

  it("writes results to a file with .output", function()
    local code, _, err = script('.output out.txt\n1 + 1\n.output\n')
    assert.equal(0, code, err)
    assert.equal("2\n", H.read(dir .. "/out.txt"))
  end)
end)

describe("weir repl on a terminal", function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    H.write(dir .. "/weir.yaml", "connections: {}\n")
  end)
  after_each(function()
    for i = #terminals, 1, -1 do terminals[i]:close(); terminals[i] = nil end
    H.cleanup(dir)
  end)

  it("ends when its terminal hangs up", function()
    local p = repl(dir)
    typed(p, "x = 1")
    local pid = p.pid
    p:hangup()
    assert.truthy(H.wait_for(function()
      return not H.succeeds("kill -0 " .. pid .. " 2>/dev/null")
             or H.output("ps -o stat= -p " .. pid):match("Z")
    end, 10))
  end)

  it("evaluates typed lines, continues an incomplete chunk, leaves with Ctrl-D", function()
    local p = repl(dir)
    typed(p, "base = 40")
    p:type("function add(n)\r")
    p:expect("...> ")
    p:type("  return base + n\r")
    p:expect("...> ")
    p:type("end\r")
    p:expect("weir> ")
    assert.matches("42", typed(p, "add(2)"), 1, true)
    p:type("\4")
    assert.equal(0, p:wait(10))
  end)

  it("completes globals, fields after . and :, ctx members and meta-commands", function()
    local p = repl(dir)
    typed(p, "my_long_variable = { alpha_field = 7 }")
    p:type("my_lo\t.alp\t\r")
    assert.matches("my_long_variable.alpha_field\n7\n", p:expect("weir> "), 1, true)
    p:type("string.up\t('ok')\r")
    assert.matches("OK", p:expect("weir> "), 1, true)
    p:type("ctx.ro\t({{a=1}})\r")
    assert.matches("(1 row)", p:expect("weir> "), 1, true)
    p:type("s = 'abc'\r")
    p:expect("weir> ")
    p:type("s:upp\t()\r")
    assert.matches("ABC", p:expect("weir> "), 1, true)
    p:type(".hel\t\r")
    assert.matches(".schema CONN TABLE", p:expect("weir> "), 1, true)
    p:type("\4")
    p:wait(10)
  end)

  it("keeps history between sessions, a multi-line chunk as one entry", function()
    local p = repl(dir)
    typed(p, "n = 0")
    p:type("for i = 1, 3 do\r")
    p:expect("...> ")
    p:type("n = n + i end\r")
    p:expect("weir> ")
    p:type("\4")
    assert.equal(0, p:wait(10))
    local hist = H.read(dir .. "/.weir/repl_history")
    assert.matches('"for i = 1, 3 do\\nn = n + i end"', hist, 1, true)
    p = repl(dir)
    typed(p, "n = 100")
    -- up arrow twice: the whole loop again, run as one chunk
    p:type("\27[A\27[A\r")
    p:expect("weir> ")
    assert.matches("106", typed(p, "n"), 1, true)
    -- reverse search
    p:type("\18n = 1\r")
    p:expect("weir> ")
    assert.matches("\n100\n", typed(p, "n"):gsub("\r", ""), 1, true)
    p:type("\4")
    p:wait(10)
  end)

  it("takes a bracketed paste whole: a pasted tab never completes", function()
    local p = repl(dir)
    p:type("\27[200~pasted = 'a\tb'\27[201~\r")
    p:expect("weir> ")
    assert.matches('"a\\9b"', typed(p, "pasted"), 1, true)
    p:type("\4")
    p:wait(10)
  end)

  it("stops a running command on Ctrl-C and keeps the session's variables", function()
    local p = repl(dir)
    typed(p, "kept = 'still here'")
    p:type("while true do end\r")
    os.execute("sleep 1")
    p:send("\3")
    assert.matches("interrupted", p:expect("weir> "), 1, true)
    assert.matches("still here", typed(p, "kept"), 1, true)
    p:type("\4")
    assert.equal(0, p:wait(10))
  end)

  it("colours only on a terminal and never with NO_COLOR; long output through $PAGER", function()
    local p = repl(dir, "", { PAGER = "sed s/^/PAGED:/" })
    typed(p, "ctx.rows({ { a = 1 } })")
    assert.matches("\27[1ma", p.buf, 1, true)
    typed(p, "rows = {} for i = 1, 45 do rows[i] = { i = i } end")
    p:type("ctx.rows(rows)\r")
    p:expect("weir> ")
    p:type(".last\r")
    local shown = p:expect("weir> ")
    assert.matches("PAGED:", shown, 1, true)
    p:type("\4")
    p:wait(10)
    p = repl(dir, "", { NO_COLOR = "1" })
    typed(p, "ctx.rows({ { a = 1 } })")
    assert.not_matches("\27%[[0-9;]*m", p.buf)
    p:type("\4")
    p:wait(10)
  end)

  it("refuses escape attempts typed at the prompt", function()
    H.write(dir .. "/weir.yaml", "connections: {}\n# secret: hunter2\n")
    local p = repl(dir)
    for _, line in ipairs({ 'io.open("/etc/passwd")', 'require "ffi"', 'os.execute("id")',
                            'ctx.csv("weir.yaml"):collect()', "getfenv(print)",
                            'assert(load("\\27LuaJ"))' }) do
      local shown = typed(p, line)
      assert.matches("error", shown, 1, true)
      assert.not_matches("hunter2", shown, 1, true)
    end
    p:type("\4")
    p:wait(10)
  end)
end)
