-- Specs for weir.stream: the stream algebra (map, filter, select, rename,
-- batch, each, count, collect) over the sources of one attempt's context
-- (ctx.rows, ctx.csv, ctx.jsonl, a SQLite query), the file and SQLite
-- sinks, the dispatch of into() to a connector's sink, and the misuse
-- errors. Runs in the trusted state of `weir script`, files in a temporary
-- folder that is the context's only root.
local H = require("helpers")
local stream = require("weir.stream")
local json = require("weir.json")

-- The batches a stream hands downstream, pulled one by one.
local function batches(s)
  local p = stream.owned(s, "stream", "spec")
  local out = {}
  while true do
    local b = p.pull()
    if not b then return out end
    out[#out + 1] = b
  end
end

local function sizes(list)
  local n = {}
  for i, b in ipairs(list) do n[i] = #b end
  return n
end

local function numbered(n)
  local rows = {}
  for i = 1, n do rows[i] = { id = i, name = "n" .. i } end
  return rows
end

describe("weir.stream", function()
  local dir, ctx, stats, opened, logs

  before_each(function()
    dir = H.tmpdir()
    stats, opened, logs = { rows_in = 0, rows_out = 0, rejected = 0 }, {}, {}
    ctx = require("weir.connectors").context({ roots = { dir }, base_dir = dir, run_id = "run1", task = "t",
                           attempt = 1 }, stats, opened,
                         function(line) logs[#logs + 1] = line end)
  end)

  after_each(function()
    for i = #opened, 1, -1 do opened[i]() end
    H.cleanup(dir)
  end)

  describe("sources", function()
    it("ctx.rows hands out a list in batches of 1000 and counts rows in", function()
      local b = batches(ctx.rows(numbered(2500)))
      assert.same({ 1000, 1000, 500 }, sizes(b))
      assert.same({ id = 1001, name = "n1001" }, b[2][1])
      assert.equal(2500, stats.rows_in)
      assert.same({}, batches(ctx.rows({})))
    end)

    it("ctx.rows refuses anything but a table or a function, blaming the caller", function()
      assert.has_error(function() ctx.rows("x") end,
                       "ctx.rows: expected an array of rows or a generator function")
    end)

    it("ctx.rows streams a generator's rows in batches, holding one batch at a time", function()
      local i = 0
      local s = ctx.rows(function()
        i = i + 1
        if i <= 2500 then return { id = i } end
      end)
      assert.equal(0, i) -- nothing is generated before the stream is read
      local p = require("weir.stream").state(s).pull
      assert.equal(1000, #p())
      assert.equal(1000, i) -- one batch generated, not the whole input
      assert.equal(1000, #p())
      assert.equal(500, #p())
      assert.is_nil(p())
      assert.equal(2500, stats.rows_in)
      assert.has_error(function() ctx.rows(function() return 1 end):collect() end,
                       "ctx.rows: the generator returned a number (a row table or nil expected)")
    end)

    it("ctx.csv reads the header as columns and converts the typed ones", function()
      H.write(dir .. "/in.csv", 'id,name,ok,score\n1,"a, b",true,1.5\n2,,false,\n')
      local rows = ctx.csv("in.csv", { types = { id = "integer", ok = "boolean",
                                                 score = "number" } }):collect()
      assert.equal(2, #rows)
      assert.same({ id = 1, name = "a, b", ok = true, score = 1.5 }, rows[1])
      assert.equal(2, rows[2].id)
      assert.equal(false, rows[2].ok)
      assert.equal(2, stats.rows_in)
    end)

    it("ctx.csv sends a bad row to the dead-letter file when it has one", function()
      H.write(dir .. "/in.csv", "id,n\n1,2\n2,x\n3,4\n")
      local rows = ctx.csv("in.csv", { types = { n = "integer" }, dead_letter = "bad.jsonl" })
        :collect()
      assert.equal(2, #rows)
      for i = #opened, 1, -1 do opened[i]() end
      opened = {}
      local reason = 'line 3: column n: expected integer, got "x" (decimal digits, below 2^53)'
      assert.same({ { source = "in.csv", line = 3, reason = reason, run_id = "run1", task = "t",
                      attempt = 1 } },
                  json.decode("[" .. H.read(dir .. "/bad.jsonl"):gsub("\n$", "") .. "]"))
      -- one line for the source, not one per row; rows in = loaded + rejected
      assert.same({ "in.csv: 1 row rejected, written to bad.jsonl (first: " .. reason .. ")" },
                  logs)
      assert.same({ 3, 1 }, { stats.rows_in, stats.rejected })
    end)

    it("a dead-letter file is the attempt's own: replaced whole, never appended to", function()
      H.write(dir .. "/in.csv", "id,n\n1,x\n2,y\n3,4\n")
      H.write(dir .. "/bad.jsonl", "an earlier attempt's rows\n")
      local s = ctx.csv("in.csv", { types = { n = "integer" }, dead_letter = "bad.jsonl" })
      local p = require("weir.stream").state(s).pull
      p()
      -- not read to its end: the old file is still there, whole
      assert.equal("an earlier attempt's rows\n", H.read(dir .. "/bad.jsonl"))
      assert.is_nil(p())
      local lines = {}
      for l in H.read(dir .. "/bad.jsonl"):gmatch("[^\n]+") do lines[#lines + 1] = json.decode(l) end
      assert.same({ 2, 3 }, { lines[1].line, lines[2].line })
      assert.equal(2, #lines)
      assert.same({ 3, 2 }, { stats.rows_in, stats.rejected })
    end)

    it("a sink's result says how many rows its source rejected", function()
      H.write(dir .. "/in.csv", "id,n\n1,x\n2,2\n")
      local res = ctx.csv("in.csv", { types = { n = "integer" }, dead_letter = "bad.jsonl" })
        :to_jsonl("out.jsonl")
      assert.same({ 1, 1 }, { res.rows, res.rejected })
      assert.equal(res.rows + res.rejected, stats.rows_in)
    end)

    it("ctx.jsonl reads one object a line and refuses anything else", function()
      H.write(dir .. "/in.jsonl", '{"a":1}\n\n{"a":2,"b":null}\n')
      assert.same({ { a = 1 }, { a = 2 } }, ctx.jsonl("in.jsonl"):collect())
      H.write(dir .. "/bad.jsonl", '{"a":1}\n[1]\n')
      assert.has_error(function() ctx.jsonl("bad.jsonl"):collect() end,
                       "bad.jsonl: line 2: expected a JSON object")
    end)

    it("refuses a path outside the roots", function()
      assert.has_error(function() ctx.csv("../outside.csv") end,
                       'path "../outside.csv" is outside the allowed roots')
    end)
  end)

  describe("operators", function()
    it("map rewrites each row and drops the rows it returns nil for", function()
      local rows = ctx.rows(numbered(5))
        :map(function(r) if r.id % 2 == 1 then return { id = r.id * 10 } end end)
        :collect()
      assert.same({ { id = 10 }, { id = 30 }, { id = 50 } }, rows)
    end)

    it("map fails the stream with the row's error when there is no dead-letter file", function()
      local s = ctx.rows(numbered(3)):map(function(r)
        if r.id == 2 then error("bad row", 0) end
        return r
      end)
      assert.has_error(function() s:collect() end, "map: bad row")
    end)

    it("map sends a raising row to the source's dead-letter file", function()
      H.write(dir .. "/in.csv", "id\n1\n2\n3\n")
      local rows = ctx.csv("in.csv", { dead_letter = "dl.jsonl" })
        :map(function(r) if r.id == "2" then error("two", 0) end return r end)
        :collect()
      assert.same({ { id = "1" }, { id = "3" } }, rows)
      for i = #opened, 1, -1 do opened[i]() end
      opened = {}
      local bad = json.decode(H.read(dir .. "/dl.jsonl"):match("^[^\n]+"))
      assert.equal("map: two", bad.reason)
      assert.same({ id = "2" }, bad.row)
    end)

    it("filter keeps the rows its function is truthy for, and skips empty batches", function()
      local b = batches(ctx.rows(numbered(2500)):filter(function(r) return r.id > 1500 end))
      assert.same({ 500, 500 }, sizes(b))
      assert.equal(1501, b[1][1].id)
    end)

    it("select keeps only the named columns, in either form", function()
      local rows = { { a = 1, b = 2, c = 3 } }
      assert.same({ { a = 1, c = 3 } }, ctx.rows(rows):select("a", "c"):collect())
      rows = { { a = 1, b = 2, c = 3 } }
      assert.same({ { b = 2 } }, ctx.rows(rows):select({ "b" }):collect())
      assert.has_error(function() ctx.rows({}):select("a", 2) end,
                       "weir.stream.select: bad column 2")
    end)

    it("rename renames the columns of the rows and of the stream", function()
      local s = ctx.rows({ { a = 1, b = 2 } }, { columns = { "a", "b" } }):rename({ a = "x" })
      assert.same({ "x", "b" }, stream.owned(s, "stream", "spec").columns)
      assert.same({ { x = 1, b = 2 } }, s:collect())
    end)

    it("batch re-chunks into batches of the given size", function()
      assert.same({ 700, 700, 700, 400 }, sizes(batches(ctx.rows(numbered(2500)):batch(700))))
      assert.same({ 2500 }, sizes(batches(ctx.rows(numbered(2500)):batch(5000))))
      assert.has_error(function() ctx.rows({}):batch(0) end, "weir.stream.batch: bad size")
    end)

    it("chains, keeping the order of the rows", function()
      local out = ctx.rows(numbered(3000))
        :filter(function(r) return r.id % 3 == 0 end)
        :map(function(r) return { id = r.id, half = r.id / 2 } end)
        :select("id")
        :batch(7)
        :collect()
      assert.equal(1000, #out)
      assert.same({ id = 3 }, out[1])
      assert.same({ id = 3000 }, out[1000])
    end)

    it("each, count and collect drain the stream", function()
      local seen = 0
      assert.equal(1200, ctx.rows(numbered(1200)):each(function() seen = seen + 1 end))
      assert.equal(1200, seen)
      assert.equal(1200, ctx.rows(numbered(1200)):count())
      assert.equal(1200, #ctx.rows(numbered(1200)):collect())
      assert.has_error(function() ctx.rows(numbered(11)):collect(10) end,
                       "weir.stream.collect: more than 10 rows")
    end)

    it("blames misuse on the caller: a method called on something else, a bad function", function()
      local s = ctx.rows({})
      assert.has_error(function() s.map({}, print) end,
                       "weir.stream.map: expected a stream (call it as s:map(...))")
      assert.has_error(function() s:filter("x") end, "weir.stream.filter: bad 'fn' (function expected)")
      assert.has_error(function() s:rename("x") end, "weir.stream.rename: bad 'map' (table expected)")
    end)
  end)

  describe("sinks", function()
    it("to_jsonl writes every row atomically and counts rows out", function()
      local res = ctx.rows(numbered(3)):to_jsonl("out/rows.jsonl")
      assert.same({ rows = 3, path = "out/rows.jsonl" }, res)
      assert.equal(3, stats.rows_out)
      local lines = {}
      for l in H.read(dir .. "/out/rows.jsonl"):gmatch("[^\n]+") do lines[#lines + 1] = json.decode(l) end
      assert.same(numbered(3), lines)
      assert.equal("rows.jsonl\n", H.output("ls " .. H.q(dir .. "/out")))
    end)

    it("to_csv writes a header and quotes what needs quoting", function()
      ctx.rows({ { a = "x,y", b = 1 }, { a = 'say "hi"' } }):to_csv("o.csv", { columns = { "a", "b" } })
      assert.equal('a,b\n"x,y",1\n"say ""hi""",\n', H.read(dir .. "/o.csv"))
    end)

    it("into loads a SQLite table, once per load even when the attempt runs again", function()
      local db = ctx.sqlite("db.sqlite")
      local res = ctx.rows(numbered(5)):into(db, "t", { mode = "append" })
      assert.same({ rows = 5, table = "t", mode = "append", skipped = false }, res)
      -- the same attempt's first load again (a retry of this attempt): skipped
      local again = require("weir.connectors").context({ roots = { dir }, base_dir = dir, run_id = "run1", task = "t",
                                     attempt = 2 }, stats, opened, print)
      local db2 = again.sqlite("db.sqlite")
      local res2 = again.rows(numbered(5)):into(db2, "t")
      assert.is_true(res2.skipped)
      assert.equal(5, db2:rows("SELECT count(*) AS n FROM t")[1].n)
    end)

    it("into replaces and upserts by key", function()
      local db = ctx.sqlite("db.sqlite")
      ctx.rows(numbered(3)):into(db, "t", { mode = "upsert", key = "id" })
      ctx.rows({ { id = 2, name = "two" }, { id = 4, name = "four" } })
        :into(db, "t", { mode = "upsert", key = "id" })
      assert.same({ { id = 1, name = "n1" }, { id = 2, name = "two" }, { id = 3, name = "n3" },
                    { id = 4, name = "four" } }, db:rows("SELECT id, name FROM t ORDER BY id"))
      ctx.rows({ { id = 9, name = "nine" } }):into(db, "t", { mode = "replace" })
      assert.same({ { id = 9, name = "nine" } }, db:rows("SELECT id, name FROM t"))
      assert.has_error(function() ctx.rows({}):into(db, "t", { mode = "upsert" }) end,
                       'weir.stream.into: mode "upsert" needs opts.key')
    end)

    it("a SQLite query is a stream again", function()
      local db = ctx.sqlite("db.sqlite")
      ctx.rows(numbered(1500)):into(db, "t")
      local b = batches(db:query("SELECT id FROM t WHERE id > ? ORDER BY id", { 100 }))
      assert.same({ 1000, 400 }, sizes(b))
      assert.equal(101, b[1][1].id)
    end)

    it("into hands a connector's object to that connector's sink", function()
      local got
      stream.sinks.spec_sink = function(p, target, tbl, opts)
        got = { rows = #p.pull(), name = target.name, tbl = tbl, opts = opts }
        return "loaded"
      end
      finally(function() stream.sinks.spec_sink = nil end)
      local obj = stream.new_object("spec_sink", {}, { name = "fake" })
      assert.equal("loaded", ctx.rows(numbered(3)):into(obj, "dst", { mode = "append" }))
      assert.same({ rows = 3, name = "fake", tbl = "dst", opts = { mode = "append" } }, got)
      assert.has_error(function() ctx.rows({}):into({}, "t") end,
                       "weir.stream.into: bad 'target' (a database or connection from ctx expected)")
    end)
  end)
end)
