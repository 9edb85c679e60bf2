-- csv_to_table end to end: SQLite and PostgreSQL targets, dead letters,
-- a re-run, an attempt failing after its load and a killed worker.
local H = require("helpers")
local T = require("helpers_templates")

local CSV = "id,amount\n1,2.5\n2,oops\n3,4\n"

describe("template csv_to_table into SQLite", function()
  local dir
  before_each(function()
    dir = T.project()
    H.write(dir .. "/in/a.csv", CSV)
  end)
  after_each(function() H.cleanup(dir) end)

  local function count(db, tbl)
    return H.output("sqlite3 " .. H.q(dir .. "/" .. db) .. " 'SELECT count(*), count(DISTINCT id) FROM "
                    .. tbl .. "'"):gsub("%s+$", "")
  end

  it("runs whole from the library, bad rows to dead letters, once per file", function()
    local args = "run template:csv_to_table@1 --quiet --param path=in/a.csv --param target=sqlite:out/s.db "
      .. "--param table=orders --param 'types={\"id\":\"integer\",\"amount\":\"number\"}'"
    local code, _, err = T.weir(dir, args)
    assert.equal(0, code, err)
    assert.equal("2|2", count("out/s.db", "orders"))
    local dl = H.read(dir .. "/dead_letters/csv_to_table.jsonl")
    assert.matches('"line":3', dl)
    assert.matches("column amount: expected number", dl)
    -- the same file again: skipped, nothing added
    code, _, err = T.weir(dir, args)
    assert.equal(0, code, err)
    assert.equal("2|2", count("out/s.db", "orders"))
  end)

  it("loads once when every attempt fails after its load committed", function()
    local code, run = T.run(dir, T.uses("csv_to_table@1",
      '{ path = "in/a.csv", target = "sqlite:out/f.db", table = "t" }', T.FAIL_AFTER_COMMIT))
    assert.equal(1, code)
    assert.equal(3, (T.attempts(run)))
    assert.equal("3|3", count("out/f.db", "t"))
  end)

  it("loads once when the worker is killed in the middle of the load", function()
    local db = H.q(dir .. "/out/k.db")
    os.execute("mkdir -p " .. H.q(dir .. "/out"))
    assert.is_true(H.succeeds("sqlite3 " .. db .. " 'CREATE TABLE t (id, amount, _file)'"))
    -- another writer holds the database for 3 s: the load waits for it
    -- and its deadline kills the worker; the retry loads
    H.output("((echo 'BEGIN IMMEDIATE;'; sleep 3; echo 'COMMIT;') | sqlite3 " .. db .. " >/dev/null 2>&1 &)")
    assert.truthy(H.wait_for(function()
      return not H.succeeds("sqlite3 -cmd '.timeout 0' " .. db .. " 'BEGIN IMMEDIATE; ROLLBACK;' 2>/dev/null")
    end, 5), "the database was not locked")
    local code, run, err = T.run(dir, T.uses("csv_to_table@1",
      '{ path = "in/a.csv", target = "sqlite:out/k.db", table = "t" }', T.KILLED))
    assert.equal(0, code, err)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal("3|3", count("out/k.db", "t"))
  end)

  it("refuses a wrong param, naming it", function()
    local code, _, err = T.weir(dir, "run template:csv_to_table --param path=in/a.csv "
                                .. "--param target=sqlite:x.db --param table=t --param format=xml")
    assert.equal(2, code)
    assert.matches('param "format": must be one of "auto", "csv", "jsonl", got "xml"', err, 1, true)
  end)
end)

H.describe_with("pg", "template csv_to_table into PostgreSQL", function()
  local dir
  before_each(function()
    dir = T.project()
    H.write(dir .. "/in/b.jsonl", '{"id":1,"v":"a"}\n{"id":2,"v":"b"}\nnot json\n{"id":3,"v":"c"}\n')
    T.psql("DROP TABLE IF EXISTS ct_orders")
    T.psql("CREATE TABLE ct_orders (id bigint, v text, _file text)")
  end)
  after_each(function() H.cleanup(dir) end)

  it("loads a JSON Lines file once when the worker is killed in the middle of the load", function()
    local code, run, err = T.run_with_lock(dir, T.uses("csv_to_table@1",
      '{ path = "in/b.jsonl", target = "wh", table = "ct_orders" }', T.KILLED),
      "LOCK TABLE ct_orders IN EXCLUSIVE MODE", 3)
    assert.equal(0, code, err)
    local n, killed = T.attempts(run)
    assert.is_true(n >= 2 and killed, "the first attempt was not killed")
    assert.equal("3|3|b.jsonl", T.psql("SELECT count(*), count(DISTINCT id), min(_file) FROM ct_orders"))
    assert.matches("not json", H.read(dir .. "/dead_letters/csv_to_table.jsonl"), 1, true)
    -- a re-run of the same file adds nothing
    code, run, err = T.run(dir, T.uses("csv_to_table@1",
      '{ path = "in/b.jsonl", target = "wh", table = "ct_orders" }'))
    assert.equal(0, code, err)
    assert.is_true(H.task(run, "t").attempt_list[1].output.skipped)
    assert.equal("3", T.psql("SELECT count(*) FROM ct_orders"))
  end)
end)
