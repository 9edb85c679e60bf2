-- WEIR_HOME holds outputs, logs, params and pipeline sources: its folder
-- and the store's files are for their owner only.
local H = require("helpers")

local function mode(path)
  local p = io.popen("stat -c %a " .. H.q(path) .. " 2>/dev/null")
  local m = p:read("*l")
  p:close()
  return m
end

describe("the metadata store's files", function()
  local dir
  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/p.lua", 'return pipeline { name = "p", tasks = { a = task { '
                             .. 'run = function() return 1 end } } }')
  end)
  teardown(function() H.cleanup(dir) end)

  it("are created 0700 (the folder) and 0600 (database, WAL, shared memory)", function()
    assert.equal(0, (H.weir(dir, "run p.lua --quiet")))
    assert.equal("700", mode(dir .. "/.weir"))
    for _, f in ipairs({ "weir.db", "weir.db-wal", "weir.db-shm", "breakers" }) do
      assert.equal("600", mode(dir .. "/.weir/" .. f), f)
    end
  end)

  it("are made private again when an older store left them readable", function()
    os.execute("chmod 644 " .. H.q(dir .. "/.weir/weir.db") .. " " .. H.q(dir .. "/.weir/weir.db-wal"))
    assert.equal(0, (H.weir(dir, "runs")))
    assert.equal("600", mode(dir .. "/.weir/weir.db"))
    assert.equal("600", mode(dir .. "/.weir/weir.db-wal"))
  end)

  it("say they are damaged, and how to recover, instead of an internal error", function()
    local d = H.tmpdir()
    H.write(d .. "/p.lua", H.read(dir .. "/p.lua"))
    assert.equal(0, (H.weir(d, "run p.lua --quiet")))
    assert.equal(0, H.status("sqlite3 " .. H.q(d .. "/.weir/weir.db")
                             .. " 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null"))
    -- overwrite the pages after the schema's
    local f = assert(io.open(d .. "/.weir/weir.db", "r+b"))
    f:seek("set", 8192)
    f:write(string.rep("\222\173", 8192))
    f:close()
    for _, cmd in ipairs({ "runs", "run p.lua --quiet" }) do
      local code, _, err = H.weir(d, cmd)
      assert.equal(3, code, cmd .. ": " .. err)
      assert.matches("the metadata store .-weir.db is damaged", err)
      assert.matches(".recover", err, 1, true)
      assert.is_nil(err:find("internal error", 1, true))
    end
    H.cleanup(d)
  end)

  it("are the same for weir health as for weir run when WEIR_METADATA_URL is empty", function()
    local d = H.tmpdir()
    H.write(d .. "/weir.yaml", 'metadata_url: "sqlite:' .. d .. '/meta/other.db"\n')
    os.execute("mkdir -p " .. H.q(d .. "/meta"))
    local code, out = H.weir(d, "health --json", { WEIR_METADATA_URL = "" })
    assert.equal(0, code, out)
    local checks = require("weir.json").decode(out).checks
    assert.equal("sqlite:" .. d .. "/meta/other.db", checks[1].target)
    H.cleanup(d)
  end)

  it("leave an existing, shared WEIR_HOME folder's own mode alone", function()
    local shared = dir .. "/shared"
    os.execute("mkdir -p " .. H.q(shared) .. " && chmod 755 " .. H.q(shared))
    assert.equal(0, (H.weir(dir, "run p.lua --quiet", { WEIR_HOME = shared })))
    assert.equal("755", mode(shared))
    assert.equal("600", mode(shared .. "/weir.db"))
  end)
end)

describe("a run whose store fills up", function()
  local dir, home, mounted
  setup(function()
    dir = H.tmpdir()
    home = dir .. "/home"
    os.execute("mkdir -p " .. H.q(home))
    -- room for the store's schema (measured: it grows with the
    -- migrations) and the run's start (2000 tasks in one transaction), not
    -- for its outputs: the store fills during the run
    local empty = dir .. "/empty"
    H.weir(dir, "runs", { WEIR_HOME = empty })
    local kb = tonumber(H.output("du -sk " .. H.q(empty) .. " | cut -f1"):match("%d+"))
    mounted = H.succeeds("mount -t tmpfs -o size=" .. (kb + 400) .. "k tmpfs " .. H.q(home)
                         .. " 2>/dev/null")
    H.write(dir .. "/p.lua", [[
      local tasks = {}
      for i = 1, 2000 do tasks["t" .. i] = task { run = function() return string.rep("x", 200) end } end
      return pipeline { name = "full", tasks = tasks }
    ]])
  end)
  teardown(function()
    if mounted then os.execute("umount " .. H.q(home)) end
    H.cleanup(dir)
  end)

  it("stops, is shown interrupted with why, and resume finishes it with room again", function()
    if not mounted then
      pending("needs root to mount a small tmpfs as WEIR_HOME")
      return
    end
    local env = { WEIR_HOME = home }
    local code, _, err = H.weir(dir, "run p.lua --quiet", env)
    assert.equal(3, code, err)
    assert.matches("database or disk is full; `weir resume .-` finishes it", err)
    local id = err:match("run (%S+) stopped")
    local _, out = H.weir(dir, "runs", env)
    assert.matches(id:gsub("%p", "%%%0") .. "%s+full%s+running %(supervisor gone%)", out)
    local _, shown = H.weir(dir, "show " .. id, env)
    assert.matches("status running (supervisor gone; weir resume " .. id .. " finishes it)",
                   shown, 1, true)
    -- why, when the full store still took that one write
    local why = shown:match("\nerror: ([^\n]*)")
    if why then assert.equal("sqlite: database or disk is full", why) end
    local _, js = H.weir(dir, "show " .. id .. " --json", env)
    local run = require("weir.json").decode(js)
    assert.equal("running", run.status)
    assert.is_true(run.supervisor_gone)
    assert.is_true(H.succeeds("mount -o remount,size=200m " .. H.q(home)))
    code, _, err = H.weir(dir, "resume " .. id .. " --quiet", env)
    assert.equal(0, code, err)
    local _, js2 = H.weir(dir, "show " .. id .. " --json", env)
    run = require("weir.json").decode(js2)
    assert.equal("success", run.status)
    assert.is_nil(run.supervisor_gone)
  end)
end)
