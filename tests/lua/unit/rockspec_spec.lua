-- The rockspec lists exactly the modules under lua/weir.
local H = require("helpers")

describe("the rockspec", function()
  it("names every module of lua/weir and nothing else", function()
    local spec = {}
    local src = H.read(H.src .. "/rockspec/weir-0.1.0-1.rockspec")
    assert.truthy(src, "rockspec/weir-0.1.0-1.rockspec is missing")
    assert(load(src, "=rockspec", "t", spec))()
    local listed = {}
    for name, path in pairs(spec.build.modules) do
      listed[path] = name
      assert.truthy(H.read(H.src .. "/" .. path), path .. " listed but missing")
    end
    local files = H.output("cd " .. H.q(H.src) .. " && find lua/weir -name '*.lua' | sort")
    for path in files:gmatch("[^\n]+") do
      assert.truthy(listed[path], path .. " is not in the rockspec")
      local mod = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      assert.equal(mod, listed[path])
    end
  end)

  it("ships the template library's folder", function()
    local spec = {}
    assert(load(H.read(H.src .. "/rockspec/weir-0.1.0-1.rockspec"), "=rockspec", "t", spec))()
    local dirs = {}
    for _, d in ipairs(spec.build.copy_directories) do dirs[d] = true end
    assert.is_true(dirs.pipelines)
  end)
end)
