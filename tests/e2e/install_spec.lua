-- Installing weir: `cmake --install` into a prefix that is then moved
-- (nothing may point back into the build folder), and the Lua library
-- through its rockspec with `luarocks make`.
local H = require("helpers")

local build = H.bin:match("^(.*)/[^/]+$")

describe("cmake --install", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() H.cleanup(dir) end)

  it("gives a relocatable weir that runs the quickstart from the moved prefix", function()
    assert(H.succeeds("cmake --install " .. H.q(build) .. " --prefix " .. H.q(dir .. "/p1")
                      .. " >/dev/null"))
    assert(H.succeeds("mv " .. H.q(dir .. "/p1") .. " " .. H.q(dir .. "/p2")))
    local bin = dir .. "/p2/bin/weir"
    -- the man page and the completions, as weir prints them
    assert.equal(H.output(H.q(bin) .. " man"), H.read(dir .. "/p2/share/man/man1/weir.1"))
    assert.equal(H.output(H.q(bin) .. " completion bash"),
                 H.read(dir .. "/p2/share/bash-completion/completions/weir"))
    assert.truthy(H.read(dir .. "/p2/share/zsh/vendor-completions/_weir"))
    assert.truthy(H.read(dir .. "/p2/share/fish/vendor_completions.d/weir.fish"))
    -- no RUNPATH or RPATH, let alone one into the build folder
    local dyn = H.output("readelf -d " .. H.q(bin) .. " " .. H.q(dir .. "/p2/lib/libweir.so"))
    assert.matches("NEEDED", dyn, 1, true)
    assert.is_nil(dyn:find("RUNPATH", 1, true), dyn)
    assert.is_nil(dyn:find("RPATH", 1, true), dyn)
    -- the quickstart, from the moved prefix's copy, with nothing of the
    -- build folder or the sources around
    local work = dir .. "/work"
    assert(H.succeeds("cp -r " .. H.q(dir .. "/p2/share/weir/examples/quickstart") .. " "
                      .. H.q(work)))
    local code = os.execute("cd " .. H.q(work) .. " && env -u WEIR_SRC -u WEIR_LIB "
                            .. "WEIR_HOME=" .. H.q(work .. "/.weir") .. " " .. H.q(bin)
                            .. " run --quiet pipeline.lua")
    assert.is_true(code == 0 or code == true)
    assert.truthy(H.read(work .. "/out/revenue_by_country.jsonl"))
    assert.equal(H.output(H.q(H.bin) .. " version"), H.output(H.q(bin) .. " version"))
  end)
end)

describe("the rockspec", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() H.cleanup(dir) end)

  it("installs the Lua library through luarocks make", function()
    if not H.succeeds("command -v luarocks >/dev/null") then
      pending("luarocks is not installed (scripts/install-deps.sh installs it)")
      return
    end
    local tree = dir .. "/tree"
    assert(H.succeeds("cd " .. H.q(H.src) .. " && luarocks make --tree " .. H.q(tree)
                      .. " rockspec/weir-0.1.0-1.rockspec >/dev/null 2>&1"))
    local spec = {}
    assert(load(H.read(H.src .. "/rockspec/weir-0.1.0-1.rockspec"), "=rockspec", "t", spec))()
    local n = 0
    for name, path in pairs(spec.build.modules) do
      local installed = tree .. "/share/lua/5.1/" .. name:gsub("%.", "/")
                        .. (path:match("/init%.lua$") and "/init.lua" or ".lua")
      assert.equal(H.read(H.src .. "/" .. path), H.read(installed), name)
      assert.truthy(loadfile(installed), name)
      n = n + 1
    end
    assert.is_true(n > 30)
    -- an installed module runs: the cron parser, from the tree
    local cron = assert(loadfile(tree .. "/share/lua/5.1/weir/cron.lua"))()
    assert.truthy(cron.parse("*/5 * * * *"))
  end)
end)
