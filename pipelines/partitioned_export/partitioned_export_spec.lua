-- partitioned_export end to end: PostgreSQL and SQLite tables to one
-- file per day, the same files under the two faults.
local H = require("helpers")
local T = require("helpers_templates")

local WITH = '{ source = "wh", table = "pe_orders", date_column = "at", order_by = "id", dir = "export", '
  .. 'from = "2026-12-05", to = "2026-12-07" }'

H.describe_with("pg", "template partitioned_export from PostgreSQL", function()
  local dir
  before_each(function()
    dir = T.project()
    T.psql("DROP TABLE IF EXISTS pe_orders")
    T.psql("CREATE TABLE pe_orders (id int, v text, at timestamptz)")
    T.psql("INSERT INTO pe_orders VALUES (2, 'b', '2026-12-05 10:00Z'), (1, 'a', '2026-12-05 09:00Z'), "
           .. "(3, 'c', '2026-12-07 23:59Z'), (4, 'late', '2026-12-08 00:00Z')")
  end)
  after_each(function() H.cleanup(dir) end)

  -- the folder's files, and each row of the two days with rows as
  -- id:v:at (the key order of a JSON object is not fixed)
  local function files()
    local out = { H.output("ls " .. H.q(dir .. "/export")) }
    for _, day in ipairs({ "2026-12-05", "2026-12-07" }) do
      for line in H.read(dir .. "/export/" .. day .. ".jsonl"):gmatch("[^\n]+") do
        local r = require("weir.json").decode(line)
        out[#out + 1] = r.id .. ":" .. r.v .. ":" .. r.at
      end
    end
    return table.concat(out, "\n")
  end

  it("writes one file per day, an empty one for a day without rows", function()
    local code, _, err = T.run(dir, T.uses("partitioned_export@1", WITH))
    assert.equal(0, code, err)
    assert.equal("2026-12-05.jsonl\n2026-12-06.jsonl\n2026-12-07.jsonl\n\n"
                 .. "1:a:2026-12-05 09:00:00+00\n2:b:2026-12-05 10:00:00+00\n3:c:2026-12-07 23:59:00+00",
                 files())
    assert.equal("", H.read(dir .. "/export/2026-12-06.jsonl"))
  end)

  it("leaves the same files under an attempt failing after its writes and a killed worker", function()
    local code, run = T.run(dir, T.uses("partitioned_export@1", WITH, T.FAIL_AFTER_COMMIT))
    assert.equal(1, code)
    assert.equal(3, (T.attempts(run)))
    local want = files()
    H.output("rm -rf " .. H.q(dir .. "/export"))
    code, run = T.run_with_lock(dir, T.uses("partitioned_export@1", WITH, T.KILLED),
                                "LOCK TABLE pe_orders IN ACCESS EXCLUSIVE MODE", 3)
    assert.equal(0, code)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal(want, files())
    assert.equal("", H.output("find " .. H.q(dir .. "/export") .. " -name '*.tmp-*'"))
  end)
end)

describe("template partitioned_export from SQLite", function()
  it("writes CSV files by the date of ISO 8601 text", function()
    local dir = T.project()
    os.execute("mkdir -p " .. H.q(dir .. "/out"))
    assert.is_true(H.succeeds("sqlite3 " .. H.q(dir .. "/out/s.db") .. " \"CREATE TABLE o (id INTEGER, at TEXT); "
                              .. "INSERT INTO o VALUES (1, '2026-12-01T10:00:00'), (2, '2026-12-02T00:00:00')\""))
    local code, _, err = T.run(dir, T.uses("partitioned_export@1",
      '{ source = "sqlite:out/s.db", table = "o", date_column = "at", order_by = "id", dir = "csv", '
      .. 'from = "2026-12-01", to = "2026-12-01", format = "csv" }'))
    assert.equal(0, code, err)
    assert.equal("id,at\n1,2026-12-01T10:00:00\n", H.read(dir .. "/csv/2026-12-01.csv"))
    H.cleanup(dir)
  end)
end)
