-- The command table of weir.cli and what weir.clidoc makes of it: the
-- parser, help, completion scripts and the man page come from one
-- definition per command.
local cli = require("weir.cli")
local clidoc = require("weir.clidoc")

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then code = ok / 256 end
  return code
end

describe("the command table", function()
  local run = cli.COMMANDS.run

  it("parses options of every spelling and checks their values", function()
    local o, pos = clidoc.parse(run, { "p.lua", "--workers=3", "--param", "a=1", "--param",
                                       "b=x=y", "-q", "--only", "t" })
    assert.same({ "p.lua" }, pos)
    assert.equal(3, o.workers)
    assert.same({ a = "1", b = "x=y" }, o.params)
    assert.is_true(o.quiet)
    assert.equal("t", o.only)
    local _, err = clidoc.parse(run, { "p.lua", "--workers", "0" })
    assert.equal("--workers must be 1..256", err)
    _, err = clidoc.parse(run, { "p.lua", "--log-format", "xml" })
    assert.equal('--log-format must be text, json, got "xml"', err)
    _, err = clidoc.parse(run, { "p.lua", "--frobnicate" })
    assert.equal("unknown option --frobnicate", err)
    _, err = clidoc.parse(run, { "p.lua", "--param", "a=1", "--param", "a=2" })
    assert.equal("--param a given twice", err)
    _, err = clidoc.parse(run, { "p.lua", "--only", "a", "--only", "b" })
    assert.equal("--only given twice", err)
    _, err = clidoc.parse(run, {})
    assert.equal("expected FILE", err)
    _, err = clidoc.parse(run, { "a", "b" })
    assert.equal('unexpected argument "b"', err)
    o, pos = clidoc.parse(run, { "--", "-odd.lua" })
    assert.same({ "-odd.lua" }, pos)
    assert.is_truthy(o)
  end)

  it("gives every command a summary, and help naming each of its options", function()
    for _, def in ipairs(cli.COMMANDS) do
      assert.is_string(def.summary, def.name)
      assert.is_function(def.run, def.name)
      local help = clidoc.command_help(def)
      assert.matches("usage: weir " .. def.name, help, 1, true)
      for _, opt in ipairs(clidoc.options_of(def)) do
        assert.matches("--" .. opt.name, help, 1, true)
      end
    end
  end)

  it("takes a new command as one entry", function()
    local n = #cli.COMMANDS
    local def = cli.command({ name = "zz-test", args = { "X" }, summary = "a test command",
                              options = { { name = "deep", help = "go deep" } },
                              run = function(o, pos) return o.deep and #pos or 0 end })
    assert.equal(2, cli.main({ "zz-test" }))
    assert.matches("zz-test X", cli.usage_text(), 1, true)
    assert.matches("--deep", clidoc.completion("bash", cli.COMMANDS), 1, true)
    table.remove(cli.COMMANDS, n + 1)
    cli.COMMANDS["zz-test"] = nil
    assert.equal(1, def.run({ deep = true }, { "x" }))
  end)

  it("is documented whole in docs/cli.md", function()
    local f = assert(io.open((os.getenv("WEIR_SRC") or ".") .. "/docs/cli.md"))
    local doc = f:read("*a")
    f:close()
    for _, def in ipairs(cli.COMMANDS) do
      local at = doc:find("\n### weir " .. def.name .. "\n", 1, true)
      assert.truthy(at, "docs/cli.md has no section for weir " .. def.name)
      local section = doc:sub(at, (doc:find("\n##", at + 1, true) or #doc))
      for _, opt in ipairs(def.options or {}) do
        assert.matches("`--" .. opt.name, section, 1, true)
      end
    end
    for _, opt in ipairs(clidoc.COMMON) do assert.matches("`--" .. opt.name, doc, 1, true) end
  end)

  it("makes completion scripts the shells accept", function()
    for _, shell in ipairs({ "bash", "zsh", "fish" }) do
      local text = clidoc.completion(shell, cli.COMMANDS)
      for _, def in ipairs(cli.COMMANDS) do
        assert.matches(def.name, text, 1, true)
      end
      local exe = shell == "bash" and "bash" or
                  (sh("command -v " .. shell .. " >/dev/null 2>&1") == 0 and shell)
      if exe then
        local f = os.tmpname()
        local h = assert(io.open(f, "w"))
        h:write(text)
        h:close()
        assert.equal(0, sh(exe .. " -n " .. f), shell)
        os.remove(f)
      end
    end
  end)

  it("makes a man page naming every command and option", function()
    local out = {}
    local real = io.write
    io.write = function(s) out[#out + 1] = s end -- luacheck: ignore
    local code = cli.main({ "man" })
    io.write = real -- luacheck: ignore
    assert.equal(0, code)
    local page = table.concat(out)
    assert.matches("^%.TH WEIR 1", page)
    for _, def in ipairs(cli.COMMANDS) do
      assert.matches(".SS weir " .. def.name, page, 1, true)
      for _, opt in ipairs(def.options or {}) do
        assert.matches("\\-\\-" .. opt.name:gsub("%-", "\\-"), page, 1, true)
      end
    end
  end)
end)
