-- The quickstart, as README command 1 runs it, on a copy of the example.
local H = require("helpers")

describe("examples/quickstart", function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    os.execute("cp -r " .. H.q(H.src .. "/examples/quickstart/pipeline.lua") .. " "
               .. H.q(H.src .. "/examples/quickstart/data") .. " " .. H.q(dir))
  end)
  after_each(function() H.cleanup(dir) end)

  it("cleans the CSV, checks it, and writes SQLite and JSON Lines", function()
    local code, _, err = H.weir(dir, "run pipeline.lua")
    assert.equal(0, code, err)
    local n = H.output("sqlite3 " .. H.q(dir .. "/out/quickstart.db")
                   .. " 'select count(*), count(distinct id) from orders'")
    local rows, distinct = n:match("(%d+)|(%d+)")
    assert.equal(rows, distinct)
    assert.is_true(tonumber(rows) > 4000)
    assert.equal("0", (H.output("sqlite3 " .. H.q(dir .. "/out/quickstart.db")
                            .. " \"select count(*) from orders where email <> lower(email)"
                            .. " or amount <= 0\""):gsub("%s", "")))
    local bad = H.read(dir .. "/out/bad_rows.jsonl")
    local nbad = select(2, bad:gsub("\n", ""))
    assert.equal(3, nbad)
    local summary = H.read(dir .. "/out/revenue_by_country.jsonl")
    assert.equal(8, select(2, summary:gsub("\n", "")))
    -- a second run upserts: same rows, nothing duplicated
    assert.equal(0, (H.weir(dir, "run pipeline.lua")))
    assert.equal(rows, (H.output("sqlite3 " .. H.q(dir .. "/out/quickstart.db")
                             .. " 'select count(*) from orders'"):gsub("%s", "")))
  end)

  it("shows a live view on a terminal", function()
    local log = dir .. "/tty.log"
    os.execute(string.format("cd %s && WEIR_HOME=%s script -qec %s %s >/dev/null 2>&1",
                             H.q(dir), H.q(dir .. "/.weir"),
                             H.q(H.bin .. " run pipeline.lua"), H.q(log)))
    local out = H.read(log) or ""
    assert.matches("\27[2K", out, 1, true)
    assert.matches("clean%s+%S*success", out) -- coloured, unless TERM is dumb
    assert.matches("rows/s", out, 1, true)
  end)
end)
