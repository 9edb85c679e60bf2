-- The SQLite store of a long-running writer (weir serve): with
-- background_checkpoints() the WAL is folded into the database by a
-- thread of its own, never by a commit.
local H = require("helpers")

local function size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

describe("the SQLite store's checkpoint thread", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  -- write about 1 MB in many commits; return the database file's size
  -- right after and a moment later
  local function write(background)
    local store = assert(require("weir.store").open(dir, "sqlite:" .. dir .. "/w.db"))
    if background then store:background_checkpoints() end
    store:checkpoint() -- a no-op with the thread
    local before = size(dir .. "/w.db")
    local pad = string.rep("x", 1000)
    for i = 1, 1000 do
      store:begin()
      store:audit_add({ at = i, method = "POST", path = "/p", outcome = pad })
      store:commit()
    end
    local just = size(dir .. "/w.db")
    local later = background and H.wait_for(function()
      local n = size(dir .. "/w.db")
      return n > before + 700000 and n
    end, 5)
    store:close()
    return before, just, later
  end

  it("folds the WAL into the database without a commit doing it", function()
    local before, _, later = write(true)
    assert.truthy(later, "the database did not grow: nothing was checkpointed")
    assert.is_true(later > before)
  end)

  it("truncates a large WAL once it is all in the database", function()
    local store = assert(require("weir.store").open(dir, "sqlite:" .. dir .. "/t.db"))
    store:background_checkpoints()
    local pad = string.rep("y", 4000)
    store:begin()
    for i = 1, 6000 do store:audit_add({ at = i, method = "POST", path = "/p", outcome = pad }) end
    store:commit()
    assert.is_true(size(dir .. "/t.db-wal") > 16 * 1024 * 1024)
    assert.truthy(H.wait_for(function() return size(dir .. "/t.db-wal") < 1024 * 1024 end, 10))
    store:close()
  end)

  it("leaves the WAL alone without it (the commits' own limit is far)", function()
    os.remove(dir .. "/w.db")
    local before, just = write(false)
    -- 1 MB is far under wal_autocheckpoint (10,000 pages): no commit folded it
    assert.is_true(just < before + 100000)
  end)
end)
