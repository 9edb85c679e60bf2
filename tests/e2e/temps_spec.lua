-- The temporary file of a file sink whose supervisor is SIGKILLed while
-- it writes: journaled before it is created (ADR 16), it is removed by
-- `weir resume` and by the start of any later run of the same home, and
-- only it: a file that merely looks like one, or a journal whose
-- supervisor still runs, is left alone.
local H = require("helpers")

local ROWS = 200000

-- in.csv: ROWS rows; the first attempt of `write` copies it to
-- out/out.csv and stops for good at row STOP, the file half-written
local function project(dir)
  local lines = { "id,name" }
  for i = 1, ROWS do lines[#lines + 1] = i .. ",name-" .. i .. "-" .. (i * 7919 % 10007) end
  local csv = table.concat(lines, "\n") .. "\n"
  H.write(dir .. "/in.csv", csv)
  H.write(dir .. "/p.lua", [[
    return pipeline { name = "bigfile", tasks = {
      write = task { run = function(ctx)
        return ctx.csv("in.csv"):map(function(r)
          if ctx.attempt == 1 and r.id == "150000" then while true do end end
          return r
        end):to_csv("out/out.csv")
      end },
    } }
  ]])
  H.write(dir .. "/q.lua", [[
    return pipeline { name = "quick", tasks = { t = task { run = function() return 1 end } } }
  ]])
  return csv
end

local function size(path)
  local s = H.read(path)
  return s and #s
end

local function journals(dir)
  return H.output("ls " .. H.q(dir .. "/.weir/temps") .. " 2>/dev/null")
end

-- Start p.lua and wait until its first attempt has written more than 1 MB
-- of its temporary file. Returns the supervisor's pid, its workers' pids
-- and the temporary file's path.
local function start_writing(dir)
  local pid = H.spawn(dir, "run p.lua --workers 1", dir .. "/run.log")
  local tmp = dir .. "/out/out.csv.tmp-write-1"
  local ok = H.wait_for(function() return (size(tmp) or 0) > 1048576 end, 60)
  assert.truthy(ok, H.read(dir .. "/run.log"))
  local workers = H.output("pgrep -P " .. pid .. " -f __worker")
  return pid, workers, tmp
end

local function kill_supervisor(pid, workers)
  os.execute("kill -9 " .. pid)
  assert.truthy(H.wait_dead(pid))
  -- the workers die with their supervisor
  for w in workers:gmatch("%d+") do assert.truthy(H.wait_dead(w, 10)) end
end

describe("a file sink's temporary file after its supervisor is killed", function()
  local dir, csv
  before_each(function()
    dir = H.tmpdir()
    csv = project(dir)
  end)
  after_each(function() H.cleanup(dir) end)

  it("is removed by weir resume, which then writes the whole file", function()
    -- files that only look like temporary files: never journaled
    local lookalikes = {
      [dir .. "/out/out.csv.tmp-write-9"] = "a user's file\n",
      [dir .. "/out/other.csv.tmp-write-1"] = "another user's file\n",
      [dir .. "/out.csv.tmp-write-1"] = "and one more\n",
    }
    for p, text in pairs(lookalikes) do H.write(p, text) end
    local pid, workers, tmp = start_writing(dir)
    local run_id = H.last_run(dir)
    kill_supervisor(pid, workers)
    assert.truthy(size(tmp) > 1048576, "the temporary file is left")
    assert.is_nil(size(dir .. "/out/out.csv"))
    assert.matches("journal%-", journals(dir))

    local code, _, err = H.weir(dir, "resume " .. run_id)
    assert.equal(0, code, err)
    assert.is_nil(size(tmp), "the temporary file is gone")
    assert.equal("success", H.show(dir, run_id).status)
    local out = H.read(dir .. "/out/out.csv")
    assert.equal(#csv, #out)
    assert.truthy(out == csv, "out/out.csv is in.csv, byte for byte")
    for p, text in pairs(lookalikes) do assert.equal(text, H.read(p), p) end
    -- the resumed supervisor's own journal went with it
    assert.equal("", journals(dir))
  end)

  it("is removed by the next run of the same home, not while its supervisor runs", function()
    local pid, workers, tmp = start_writing(dir)
    -- another run meanwhile: the journal is held, the file is not touched
    local code, _, err = H.weir(dir, "run q.lua")
    assert.equal(0, code, err)
    assert.truthy(size(tmp) > 0, "a running supervisor's temporary file is kept")
    kill_supervisor(pid, workers)
    assert.truthy(size(tmp) > 0)
    code, _, err = H.weir(dir, "run q.lua")
    assert.equal(0, code, err)
    assert.is_nil(size(tmp), "the killed supervisor's temporary file is gone")
    assert.equal("", journals(dir))
  end)
end)
