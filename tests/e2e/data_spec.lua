-- End-to-end: streams and the file and SQLite connectors, through real
-- workers and the file broker.
local H = require("helpers")

local function sqlite(db, sql)
  return (H.output("sqlite3 " .. H.q(db) .. " " .. H.q(sql)):gsub("%s+$", ""))
end

describe("data connectors", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  local function run(src, args) return H.run_pipeline(dir, src, args) end

  it("loads RFC 4180 CSV into SQLite, quoted fields and newlines included", function()
    H.write(dir .. "/in.csv", 'id,name,note\n1,"Smith, Ann","said ""hi""\nthen left"\n2,Bob,\n')
    local code, r, err = run([[
      return pipeline { name = "csv", tasks = { load = task { run = function(ctx)
        return ctx.csv("in.csv", { types = { id = "integer" } })
          :into(ctx.sqlite("out/db.sqlite"), "people", { mode = "append" })
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.equal(2, H.task(r, "load").output.rows)
    assert.equal('Smith, Ann|said "hi"\nthen left', sqlite(dir .. "/out/db.sqlite",
      "select name, note from people where id = 1"))
  end)

  it("names the file and line of a malformed row", function()
    H.write(dir .. "/in.csv", 'a,b\n1,2\n3,"x"y\n4,5\n')
    local code, r = run([[
      return pipeline { name = "bad", tasks = { load = task { run = function(ctx)
        return ctx.csv("in.csv"):count() end } } }
    ]])
    assert.equal(1, code)
    assert.matches("in.csv: line 3: unexpected character after closing quote",
                   H.task(r, "load").error, 1, true)
  end)

  it("sends bad rows to a dead-letter file with the reason, by policy", function()
    H.write(dir .. "/in.csv", 'a,b\n1,2\n3,"x"y\n4\n5,6\n7,oops\n')
    local code, r, err = run([[
      return pipeline { name = "dl", tasks = { load = task { run = function(ctx)
        return ctx.csv("in.csv", { types = { b = "integer" }, dead_letter = "bad.jsonl" })
          :map(function(row) if row.a == "5" then error("five is right out") end return row end)
          :count()
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.equal(1, H.task(r, "load").output)
    local dl = H.read(dir .. "/bad.jsonl")
    assert.matches("unexpected character after closing quote", dl, 1, true)
    assert.matches("expected 2 fields, got 1", dl, 1, true)
    assert.matches("expected integer", dl, 1, true)
    assert.matches("five is right out", dl, 1, true)
  end)

  it("replaces and upserts atomically", function()
    local p = [[
      return pipeline { name = "modes", params = { mode = { type = "string", default = "append" },
                                                     v = { type = "integer", default = 1 } },
        tasks = { load = task { run = function(ctx)
          local rows = {}
          local base = ctx.params.mode == "append" and 3 or 0
          for i = 1, 3 do rows[i] = { id = base + i, v = ctx.params.v } end
          return ctx.rows(rows):into(ctx.sqlite("m.db"), "t",
                                     { mode = ctx.params.mode, key = "id" })
        end } } }
    ]]
    assert.equal(0, (run(p, "--param mode=upsert --param v=1")))
    assert.equal(0, (run(p, "--param mode=upsert --param v=2")))
    assert.equal("3|6", sqlite(dir .. "/m.db", "select count(*), sum(v) from t"))
    assert.equal(0, (run(p, "--param mode=append --param v=5")))
    assert.equal("6", sqlite(dir .. "/m.db", "select count(*) from t"))
    assert.equal(1, (run(p, "--param mode=append --param v=5")))
    assert.equal("6", sqlite(dir .. "/m.db", "select count(*) from t"))
    assert.equal(0, (run(p, "--param mode=replace --param v=7")))
    assert.equal("3|21", sqlite(dir .. "/m.db", "select count(*), sum(v) from t"))
  end)

  it("does not load twice when a retried attempt repeats a committed load", function()
    local code, r, err = run([[
      return pipeline { name = "retry", tasks = { load = task { retries = 1, retry_delay = "10ms",
        run = function(ctx)
          local res = ctx.rows({ { id = 1 }, { id = 2 } }):into(ctx.sqlite("r.db"), "t")
          if ctx.attempt == 1 then error("fail after the load committed") end
          return res
        end } } }
    ]])
    assert.equal(0, code, err)
    assert.equal("2", sqlite(dir .. "/r.db", "select count(*) from t"))
    assert.is_true(H.task(r, "load").output.skipped)
  end)

  it("reads a byte order mark as no part of a name, and refuses CR-only lines and twin names",
     function()
    H.write(dir .. "/bom.csv", "\239\187\191id,name\n1,a\n")
    H.write(dir .. "/cr.csv", "id,name\r1,a\r2,b\r")
    H.write(dir .. "/dup.csv", "id,name,id\n1,a,2\n")
    local code, r = run([[
      return pipeline { name = "shapes", tasks = {
        bom = task { run = function(ctx) return ctx.csv("bom.csv"):collect() end },
        cr = task { run = function(ctx) return ctx.csv("cr.csv"):count() end },
        dup = task { run = function(ctx) return ctx.csv("dup.csv"):count() end },
      } }
    ]])
    assert.equal(1, code)
    assert.same({ { id = "1", name = "a" } }, H.task(r, "bom").output)
    assert.matches("cr.csv: the header row holds a carriage return: the file's lines end with CR "
                   .. "alone", H.task(r, "cr").error, 1, true)
    assert.matches('dup.csv: columns 1 and 3 are both named "id"', H.task(r, "dup").error, 1, true)
  end)

  it("takes typed CSV and JSON Lines numbers only when a double holds them exactly", function()
    H.write(dir .. "/t.csv", "id,n,i\n1,0.1,9007199254740991\n2,0x1A,1\n3,1e400,2\n"
                             .. "4,0.123456789012345678901,3\n5,12.50,4\n6,5e-324,9007199254740993\n"
                             .. "7,-0,1e3\n8,7,-12\n")
    H.write(dir .. "/t.jsonl", '{"id":9007199254740993,"s":"12345678901234567890"}\n'
                               .. '{"id":1,"s":"12345678901234567890","v":0.5}\n{"x":1e400}\n'
                               .. '{"x":0x1A}\n{"x":1.5e3,"n":"name e5"}\n')
    local code, r, err = run([[
      return pipeline { name = "exact", tasks = { t = task { run = function(ctx)
        local c = ctx.csv("t.csv", { types = { n = "number", i = "integer" },
                                     dead_letter = "bad_csv.jsonl" }):collect()
        local j = ctx.jsonl("t.jsonl", { dead_letter = "bad_jsonl.jsonl" }):collect()
        local ids = {}
        for _, row in ipairs(c) do ids[#ids + 1] = row.id end
        return { csv = table.concat(ids, ","), jsonl = #j, big = c[1].i == 9007199254740991 }
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.same({ csv = "1,5,8", jsonl = 2, big = true }, H.task(r, "t").output)
    local bad = H.read(dir .. "/bad_csv.jsonl")
    for _, line in ipairs({ 3, 4, 5, 7, 8 }) do   -- the header is line 1
      assert.matches('"line":' .. line, bad, 1, true)
    end
    assert.matches('expected integer, got \\"9007199254740993\\" (decimal digits, below 2^53)',
                   bad, 1, true)
    local badj = H.read(dir .. "/bad_jsonl.jsonl")
    assert.matches("the number 9007199254740993 cannot be held exactly", badj, 1, true)
    assert.matches("the number 1e400 cannot be held exactly", badj, 1, true)
    assert.matches('"line":4', badj, 1, true)
  end)

  it("writes numbers exactly and arrays or JSON as JSON text in CSV", function()
    local code, _, err = run([[
      return pipeline { name = "csvnum", tasks = { out = task { run = function(ctx)
        return ctx.rows({
          { a = 123456789012345, b = 0.1 + 0.2, c = 2^53, d = -0.0, e = { 1, 2 }, f = ctx.NULL },
          { a = 1e300, b = 5e-324, c = -7, d = 1.5, e = { x = "q" }, f = "s" },
        }):to_csv("n.csv", { columns = { "a", "b", "c", "d", "e", "f" } })
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.equal('a,b,c,d,e,f\n'
                 .. '123456789012345,0.30000000000000004,9007199254740992,-0,"[1,2]",\n'
                 .. '1e+300,5e-324,-7,1.5,"{""x"":""q""}",s\n', H.read(dir .. "/n.csv"))
  end)

  it("carries numbers exactly in JSON Lines files and in task outputs", function()
    local code, r, err = run([[
      return pipeline { name = "jsonnum", tasks = {
        a = task { run = function(ctx)
          ctx.rows({ { id = 1, v = 0.1 + 0.2, big = 123456789012345, c = 2^53 } }):to_jsonl("n.jsonl")
          return { v = 0.1 + 0.2, big = 123456789012345, c = 2^53, small = 7 }
        end },
        b = task { after = { "a" }, run = function(ctx)
          local i = ctx.inputs.a
          return { v = i.v == 0.1 + 0.2, big = i.big == 123456789012345, c = i.c == 2^53 }
        end },
      } }
    ]])
    assert.equal(0, code, err)
    assert.equal('{"big":123456789012345,"c":9007199254740992,"id":1,"v":0.30000000000000004}\n',
                 H.read(dir .. "/n.jsonl"))
    assert.same({ v = true, big = true, c = true }, H.task(r, "b").output)
    local out = H.task(r, "a").output
    assert.same({ 0.1 + 0.2, 123456789012345, 2^53 }, { out.v, out.big, out.c })
  end)

  it("refuses an upsert row with a NULL key, at once and loading nothing", function()
    local code, r = run([[
      return pipeline { name = "nullkey", tasks = { load = task { retries = 2, retry_delay = "10ms",
        run = function(ctx)
          return ctx.rows({ { id = 1, v = "a" }, { id = ctx.NULL, v = "b" }, { v = "c" } })
            :into(ctx.sqlite("k.db"), "t", { mode = "upsert", key = "id" })
        end } } }
    ]])
    assert.equal(1, code)
    local t = H.task(r, "load")
    assert.equal(1, t.attempts)   -- not retried: a retry cannot fix the data
    assert.matches("upsert into t: row 2 has a NULL key (id); a NULL key matches no row",
                   t.error, 1, true)
    assert.equal("0", sqlite(dir .. "/k.db", "select count(*) from sqlite_master where name = 't'"))
  end)

  it("refuses a retry that makes its loads in another order, loading nothing twice", function()
    local code, r = run([[
      return pipeline { name = "order", tasks = { load = task { retries = 1, retry_delay = "10ms",
        run = function(ctx)
          local db = ctx.sqlite("o.db")
          local first, second = "a", "b"
          if ctx.attempt == 2 then first, second = "b", "a" end
          ctx.rows({ { id = 1 } }):into(db, first)
          if ctx.attempt == 1 then error("fail after the first load committed") end
          ctx.rows({ { id = 2 } }):into(db, second)
          return "done"
        end } } }
    ]])
    assert.equal(1, code)
    local attempts = H.task(r, "load").attempt_list
    assert.matches("load 1 of task load went to a (append) in an earlier attempt, not to b "
                   .. "(append): a task must make its loads in the same order in every attempt",
                   attempts[2].error, 1, true)
    -- table a holds the first attempt's one row; b was never loaded
    assert.equal("1", sqlite(dir .. "/o.db", "select count(*) from a"))
    assert.equal("0", sqlite(dir .. "/o.db",
                             "select count(*) from sqlite_master where name = 'b'"))
  end)

  it("leaves no half-written file behind an attempt killed while writing", function()
    local rows = {}
    for i = 1, 50 do rows[i] = "{\"i\": " .. i .. "}" end
    H.write(dir .. "/in.jsonl", table.concat(rows, "\n") .. "\n")
    local code, r = run([[
      return pipeline { name = "killed", tasks = { write = task {
        timeout = "1s", retries = 1, retry_delay = "10ms",
        run = function(ctx)
          return ctx.jsonl("in.jsonl"):batch(10):map(function(row)
            if row.i > 20 then while true do end end
            return row
          end):to_csv("out/result.csv")
        end } } }
    ]])
    assert.equal(1, code)
    assert.matches("timed out", H.task(r, "write").error, 1, true)
    -- both attempts were killed after opening their temporary file
    local left = H.output("ls -A " .. H.q(dir .. "/out"))
    assert.equal("", (left:gsub("%s+$", "")))
  end)

  it("streams JSON Lines through select, rename and filter into CSV", function()
    H.write(dir .. "/in.jsonl", '{"id":1,"name":"a","x":null}\n\n{"id":2,"name":"b"}\n{"id":3,"name":"c"}\n')
    local code, r, err = run([[
      return pipeline { name = "jl", tasks = { t = task { run = function(ctx)
        return ctx.jsonl("in.jsonl"):filter(function(row) return row.id > 1 end)
          :select("id", "name"):rename({ name = "label" }):batch(1)
          :to_csv("out/o.csv")
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.equal(2, H.task(r, "t").output.rows)
    assert.equal("id,label\n2,b\n3,c\n", H.read(dir .. "/out/o.csv"))
  end)

  it("reads SQL NULL as ctx.NULL and keeps it through SQLite, CSV and JSON Lines", function()
    -- the first row's score is NULL: a created table still takes its
    -- type from a non-NULL value
    sqlite(dir .. "/src.db", [[CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL);
      INSERT INTO t VALUES (1, 'a', NULL), (2, NULL, 2.5), (3, NULL, NULL), (4, 'd', 4.5);]])
    local code, r, err = run([[
      return pipeline { name = "nulls", tasks = { t = task { run = function(ctx)
        local src = ctx.sqlite("src.db")
        local rows = src:rows("SELECT id, name, score FROM t ORDER BY id")
        local shape = {}
        for i, row in ipairs(rows) do
          local keys, nulls = 0, 0
          for _, v in pairs(row) do
            keys = keys + 1
            if v == ctx.NULL then nulls = nulls + 1 end
          end
          shape[i] = keys .. "/" .. nulls
        end
        src:query("SELECT * FROM t"):into(ctx.sqlite("dst.db"), "t")
        src:query("SELECT * FROM t ORDER BY id"):to_csv("out/t.csv")
        src:query("SELECT * FROM t ORDER BY id"):to_jsonl("out/t.jsonl")
        return { shape = table.concat(shape, " "), null_is_null = rows[3].name == ctx.NULL,
                 nil_is_not = rows[3].name ~= nil }
      end } } }
    ]])
    assert.equal(0, code, err)
    local out = H.task(r, "t").output
    -- every row keeps its three columns; NULLs are ctx.NULL, never nil
    assert.same({ shape = "3/1 3/1 3/2 3/0", null_is_null = true, nil_is_not = true }, out)
    -- the copy equals its source, compared by SQLite itself
    local cmp = "ATTACH '" .. dir .. "/src.db' AS s; "
    assert.equal("0|0|4", sqlite(dir .. "/dst.db", cmp
      .. "SELECT (SELECT count(*) FROM (SELECT * FROM t EXCEPT SELECT * FROM s.t)),"
      .. " (SELECT count(*) FROM (SELECT * FROM s.t EXCEPT SELECT * FROM t)), count(*) FROM t"))
    assert.equal("2|2|real", sqlite(dir .. "/dst.db", "SELECT count(*) FILTER (WHERE name IS NULL),"
      .. " count(*) FILTER (WHERE score IS NULL), (SELECT typeof(score) FROM t WHERE id = 2) FROM t"))
    assert.equal("id,name,score\n1,a,\n2,,2.5\n3,,\n4,d,4.5\n", H.read(dir .. "/out/t.csv"))
    local lines = {}
    for l in H.read(dir .. "/out/t.jsonl"):gmatch("[^\n]+") do
      lines[#lines + 1] = require("weir.json").decode(l)
    end
    assert.equal(4, #lines)
    assert.equal(require("weir.json").null, lines[3].name)
    assert.equal(require("weir.json").null, lines[3].score)
    assert.equal("a", lines[1].name)
  end)

  it("binds query values and quotes identifiers", function()
    local code, r, err = run([[
      return pipeline { name = "q", tasks = { t = task { run = function(ctx)
        local db = ctx.sqlite("q.db")
        ctx.rows({ { ["we\"ird"] = "x'); DROP TABLE t; --" } }):into(db, 'ta"ble')
        return db:rows('SELECT count(*) AS n FROM "ta""ble" WHERE "we""ird" = ?',
                       { "x'); DROP TABLE t; --" })[1].n
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.equal(1, H.task(r, "t").output)
  end)

  it("reaches extra roots from WEIR_ROOTS and nothing else", function()
    local other = H.tmpdir()
    H.write(other .. "/x.csv", "a\n1\n")
    H.write(dir .. "/p.lua", string.format([[
      return pipeline { name = "roots", tasks = { t = task { run = function(ctx)
        return ctx.csv(%q):count() end } } }
    ]], other .. "/x.csv"))
    local code = H.weir(dir, "run p.lua")
    assert.equal(1, code)
    code = H.weir(dir, "run p.lua", { WEIR_ROOTS = other })
    assert.equal(0, code)
    H.cleanup(other)
  end)
end)

describe("worker processes", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("are locked down: unprivileged, scrubbed environment, no inherited files", function()
    if H.output("id -u"):match("^0") == nil then
      pending("needs root to check the privilege drop")
      return
    end
    H.write(dir .. "/p.lua", [[
      return pipeline { name = "lock", tasks = { t = task { run = function()
        local t0 = os.time() while os.time() - t0 < 3 do end end } } }
    ]])
    local pid = H.spawn(dir, "run p.lua --workers 1", dir .. "/run.log")
    local wpid = H.wait_for(function()
      return tonumber(H.output("pgrep -P " .. pid .. " -f __worker"):match("%d+"))
    end, 10)
    assert.truthy(wpid)
    os.execute("sleep 0.3")
    local status = H.read("/proc/" .. wpid .. "/status")
    assert.matches("\nUid:%s+65534", status)
    assert.matches("\nNoNewPrivs:%s+1", status)
    assert.matches("\nSeccomp:%s+2", status)
    local env = H.read("/proc/" .. wpid .. "/environ") or ""
    assert.is_nil(env:find("WEIR_HOME", 1, true))
    -- the breaker table is mapped shared and read-only (changes go
    -- through the supervisor)
    local maps = H.read("/proc/" .. wpid .. "/maps") or ""
    assert.matches("r%-%-s %x+ %S+ %d+%s+" .. dir:gsub("%p", "%%%0") .. "/%.weir/breakers", maps)
    local fds = H.output("ls /proc/" .. wpid .. "/fd")
    local n = 0
    for fd in fds:gmatch("%d+") do
      n = n + 1
      assert.is_true(tonumber(fd) <= 4, "unexpected fd " .. fd)
    end
    assert.is_true(n <= 5)
    local limits = H.read("/proc/" .. wpid .. "/limits")
    assert.matches("Max core file size%s+0%s+0", limits)
    assert.matches("Max processes%s+0%s+0", limits)
    os.execute("kill -TERM " .. pid)
    H.wait_dead(pid)
  end)

  it("retry a task killed at every deadline a bounded number of times", function()
    H.write(dir .. "/p.lua", [[
      return pipeline { name = "spin", tasks = { s = task { retries = 2, retry_delay = "10ms",
        timeout = "200ms", run = function() while true do end end } } }
    ]])
    local code = H.weir(dir, "run p.lua")
    assert.equal(1, code)
    local r = H.show(dir, H.last_run(dir))
    assert.equal(3, H.task(r, "s").attempts)
    assert.equal("failed", H.task(r, "s").state)
  end)
end)

describe("SQLite queries", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("can nest a query of the same text inside an open stream", function()
    H.write(dir .. "/p.lua", [[
      return pipeline { name = "nested", tasks = { a = task { timeout = "20s", run = function(ctx)
        local db = ctx.sqlite("n.db")
        db:exec("CREATE TABLE n (x)")
        -- one statement: 2,500 commits would test the disk, not nesting
        db:exec("INSERT INTO n WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                .. "FROM c WHERE x < 2500) SELECT x FROM c")
        local seen = 0
        db:query("SELECT x FROM n ORDER BY x"):each(function(r)
          if r.x == 1 then assert(#db:rows("SELECT x FROM n ORDER BY x") == 2500) end
          seen = seen + 1
        end)
        return seen
      end } } }
    ]])
    local code, _, err = H.weir(dir, "run p.lua")
    assert.equal(0, code, err)
    assert.equal(2500, H.task(H.show(dir, H.last_run(dir)), "a").output)
  end)
end)

describe("sinks and statements", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  local function run(src, args) return H.run_pipeline(dir, src, args) end

  it("empties the table when replacing with an empty stream", function()
    local code, _, err = run([[
      return pipeline { name = "empty", tasks = { t = task { run = function(ctx)
        local db = ctx.sqlite("e.db")
        ctx.rows({ { a = 1 }, { a = 2 } }):into(db, "t")
        return ctx.rows({}):into(db, "t", { mode = "replace" })
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.equal("0", sqlite(dir .. "/e.db", "select count(*) from t"))
  end)

  it("refuses to run a second statement silently", function()
    local code, r = run([[
      return pipeline { name = "two", tasks = { t = task { run = function(ctx)
        ctx.sqlite("s.db"):exec("CREATE TABLE a (x); INSERT INTO a VALUES (1)")
      end } } }
    ]])
    assert.equal(1, code)
    assert.matches("one statement per call", H.task(r, "t").error, 1, true)
  end)

  it("writes CSV with any delimiter, and a header even with no rows", function()
    local code, _, err = run([[
      return pipeline { name = "csvout", tasks = { t = task { run = function(ctx)
        ctx.rows({ { a = "x%y", b = 2 } }):to_csv("o1.csv", { delimiter = "%" })
        return ctx.rows({}):to_csv("o2.csv", { columns = { "a", "b" } })
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.equal('a%b\n"x%y"%2\n', H.read(dir .. "/o1.csv"))
    assert.equal("a,b\n", H.read(dir .. "/o2.csv"))
  end)
end)

describe("CSV and JSON Lines options", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  local function run(src, args) return H.run_pipeline(dir, src, args) end

  it("reads other delimiters, no quoting, and typed booleans", function()
    H.write(dir .. "/semi.csv", 'id;flag;note\n1;true;"kept"\n2;0;\n')
    local code, r, err = run([[
      return pipeline { name = "opts", tasks = { t = task { run = function(ctx)
        local rows = ctx.csv("semi.csv", { delimiter = ";", quote = "",
                                           types = { id = "integer", flag = "boolean" } })
          :collect()
        return { rows[1].flag, rows[2].flag, rows[1].note, rows[2].note }
      end } } }
    ]])
    assert.equal(0, code, err)
    assert.same({ true, false, '"kept"', "" }, H.task(r, "t").output)
  end)

  it("names the line of a malformed JSON Lines row, or dead-letters it", function()
    H.write(dir .. "/in.jsonl", '{"a":1}\n{"a":\n[1,2]\n{"a":3}\n')
    local code, r = run([[
      return pipeline { name = "jl", tasks = {
        strict = task { run = function(ctx) return ctx.jsonl("in.jsonl"):count() end },
        lenient = task { run = function(ctx)
          return ctx.jsonl("in.jsonl", { dead_letter = "bad.jsonl" }):count() end },
      } }
    ]])
    assert.equal(1, code)
    assert.matches("in.jsonl: line 2:", H.task(r, "strict").error, 1, true)
    assert.equal(2, H.task(r, "lenient").output)
    local bad = H.read(dir .. "/bad.jsonl")
    assert.matches("line 3: expected a JSON object", bad, 1, true)
  end)
end)
