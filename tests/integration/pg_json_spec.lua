-- json, jsonb and jsonb[] copied by real `weir run` pipelines, on every
-- PostgreSQL read path (binary COPY, text COPY, cursor, single-row mode,
-- db:rows) and write path (binary COPY, text COPY, upsert staging, bound
-- parameters), without a map and through a map that returns the row
-- untouched, and out to JSON Lines, CSV and SQLite. Source and copies are
-- compared by the server (json as text, jsonb and jsonb[] with =, SQL
-- NULL apart from JSON null) and the files byte for byte against what
-- psql and sqlite3 print: no weir code reads the results.
local H = require("helpers")

local PG = H.service("pg") or {}
local URL, PORT, PW = PG.url, PG.port, PG.password

local function psql(sql)
  return H.output("psql " .. H.q(URL) .. " -Atqc " .. H.q(sql) .. " 2>&1"):gsub("%s+$", "")
end

-- The values: JSON strings that look like JSON ("123", an object, not
-- JSON at all), JSON null at the top and nested, SQL NULL, numbers past a
-- double (2^53 + 1, 1e400, many digits), json's own text (key order,
-- spacing, duplicate keys, escapes \u00e9 and \/).
local ROWS = [[
(1, '"123"', '"123"', ARRAY['"123"'::jsonb, '123']),
(2, '"{\"a\":1}"', '"{\"a\":1}"', ARRAY['"{\"a\":1}"'::jsonb]),
(3, '"not json {"', '"tru"', ARRAY['"nul"'::jsonb, '"x y"', '"NULL"']),
(4, 'null', 'null', ARRAY['null'::jsonb, NULL]),
(5, NULL, NULL, NULL),
(6, '{"a":null,"b":[null,{"c":null}]}', '{"a":null,"b":[null,{"c":null}]}',
    ARRAY['{"a":null}'::jsonb, '[null]']),
(7, '9007199254740993', '9007199254740993', ARRAY['9007199254740993'::jsonb]),
(8, '[1e400, -1E-400, 0.1000000000000000055511151231257827, -0, 123456789012345678901234567890]',
    '[1e400, -1E-400, 0.1000000000000000055511151231257827, -0, 123456789012345678901234567890]',
    ARRAY['1e400'::jsonb]),
(9, ' { "b" : 1,"a":2 ,  "b":3 } ', '{"b": 1, "a": 2}', ARRAY['{"b":1,"a":2}'::jsonb]),
(10, '["\u00e9\/", "tab\t", "q\"\\"]', '{"k\u00e9": "a\/b\n"}', ARRAY['"\u00e9\/"'::jsonb]),
(11, '{}', '[]', ARRAY[]::jsonb[])
]]

-- Rows of a that are not in b, plus rows of b not in a: json compared as
-- text (exactly), jsonb and jsonb[] with =.
local function differences(a, b)
  local cols = "SELECT id, j::text, jb, ja FROM "
  return psql(("SELECT count(*) FROM ((%s%s EXCEPT ALL %s%s) UNION ALL (%s%s EXCEPT ALL %s%s)) d")
              :format(cols, a, cols, b, cols, b, cols, a))
end

-- What the server says each row holds: SQL NULL or the JSON type, per column.
local function kinds(tbl)
  return psql(("SELECT string_agg(id || ':' || coalesce(json_typeof(j), 'SQL') || ','"
               .. " || coalesce(jsonb_typeof(jb), 'SQL') || ',' || coalesce(array_to_string("
               .. "ARRAY(SELECT coalesce(jsonb_typeof(e), 'SQL') FROM unnest(ja) e), '/'), 'SQL'),"
               .. " ' ' ORDER BY id) FROM %s"):format(tbl))
end

H.describe_with("pg", "json and jsonb copied exactly", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  it("copies json, jsonb and jsonb[] value for value on every read and write path", function()
    local targets = { "jx_bin", "jx_text", "jx_cursor", "jx_rowmode", "jx_map", "jx_upsert", "jx_exec" }
    psql("DROP TABLE IF EXISTS jx_src, " .. table.concat(targets, ", ") .. "; "
         .. "CREATE TABLE jx_src (id int PRIMARY KEY, j json, jb jsonb, ja jsonb[]); "
         .. "INSERT INTO jx_src VALUES " .. ROWS .. "; "
         .. "CREATE TABLE jx_upsert (LIKE jx_src INCLUDING ALL); "
         .. "CREATE TABLE jx_exec (LIKE jx_src INCLUDING ALL)")
    H.write(dir .. "/weir.yaml", H.yaml("pg", "wh", PORT))
    H.write(dir .. "/p.lua", [[
local SQL = "SELECT * FROM jx_src ORDER BY id"
local function copy(query_opts, target, into_opts, map)
  return task { run = function(ctx)
    local db = ctx.source("wh")
    local params = query_opts and query_opts.params
    local s = db:query(params and "SELECT * FROM jx_src WHERE id > $1 ORDER BY id" or SQL,
                       params, query_opts)
    if map then s = s:map(map) end
    return s:into(ctx.sink("wh"), target, into_opts)
  end }
end
return pipeline { name = "jsoncopy", tasks = {
  bin = copy(nil, "jx_bin"),
  text = copy({ binary = false }, "jx_text", { binary = false }),
  cursor = copy({ params = { 0 } }, "jx_cursor"),
  rowmode = copy({ mode = "rows" }, "jx_rowmode"),
  map = copy(nil, "jx_map", nil, function(r) return r end),
  upsert = copy({ binary = false }, "jx_upsert", { mode = "upsert", key = "id" },
                function(r) return r end),
  exec = task { run = function(ctx)
    local db = ctx.source("wh")
    local rows = db:rows(SQL)
    for _, r in ipairs(rows) do
      db:exec("INSERT INTO jx_exec VALUES ($1, $2, $3, $4)", { r.id, r.j, r.jb, r.ja })
    end
    return #rows
  end },
  -- what a map sees: JSON null is not ctx.NULL, a string stays a string
  look = task { run = function(ctx)
    local r = ctx.source("wh"):rows("SELECT * FROM jx_src WHERE id IN (1, 4, 5) ORDER BY id")
    return { one = r[1].jb:decode(), one_text = tostring(r[1].jb),
             null_is_sql_null = r[2].jb == ctx.NULL, null_text = tostring(r[2].jb),
             null_decoded_is_null = r[2].jb:decode() == ctx.NULL,
             element = tostring(r[2].ja[1]), element_sql_null = r[2].ja[2] == ctx.NULL,
             sql_null = r[3].jb == ctx.NULL }
  end },
} }]])
    local code, out, err = H.weir(dir, "run p.lua", { WEIR_PW = PW })
    assert.equal(0, code, out .. err)
    local want = kinds("jx_src")
    assert.equal("1:string,string,string/number 2:string,string,string 3:string,string,string/string/string "
                 .. "4:null,null,null/SQL 5:SQL,SQL, 6:object,object,object/array 7:number,number,number "
                 .. "8:array,array,number 9:object,object,object 10:array,object,string 11:object,array,",
                 want)
    for _, t in ipairs(targets) do
      assert.equal("0", differences("jx_src", t), t)
      assert.equal(want, kinds(t), t)
      -- json keeps its text byte for byte: key order, spacing, escapes
      assert.equal("0", psql(("SELECT count(*) FROM jx_src s JOIN %s d USING (id) "
                              .. "WHERE s.j::text IS DISTINCT FROM d.j::text "
                              .. "OR s.jb::text IS DISTINCT FROM d.jb::text "
                              .. "OR s.ja::text IS DISTINCT FROM d.ja::text"):format(t)), t)
    end
    -- a table weir created has the source's types
    assert.equal("integer,json,jsonb,jsonb[]",
                 psql("SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) "
                      .. "FROM pg_attribute WHERE attrelid = 'jx_bin'::regclass AND attnum > 0"))
    local look = H.task(H.show(dir, H.last_run(dir)), "look").output
    assert.same({ one = "123", one_text = '"123"', null_is_sql_null = false, null_text = "null",
                  null_decoded_is_null = true, element = "null", element_sql_null = true,
                  sql_null = true }, look)
  end)

  it("writes json as its exact text to JSON Lines, CSV and SQLite", function()
    psql("DROP TABLE IF EXISTS jf_src; CREATE TABLE jf_src (id int PRIMARY KEY, j json, jb jsonb, ja jsonb[]); "
         .. "INSERT INTO jf_src VALUES " .. ROWS)
    H.write(dir .. "/weir.yaml", H.yaml("pg", "wh", PORT))
    H.write(dir .. "/p.lua", [[
return pipeline { name = "jsonfiles", tasks = {
  files = task { run = function(ctx)
    local db = ctx.source("wh")
    db:query("SELECT id, j, jb FROM jf_src ORDER BY id"):to_jsonl("out.jsonl")
    db:query("SELECT id, j, jb FROM jf_src ORDER BY id"):to_csv("out.csv")
    db:query("SELECT id, j, jb FROM jf_src ORDER BY id"):into(ctx.sqlite("out.db"), "t")
    return db:rows("SELECT jb FROM jf_src WHERE id = 7")[1]
  end },
} }]])
    local code, out, err = H.weir(dir, "run p.lua", { WEIR_PW = PW })
    assert.equal(0, code, out .. err)
    -- JSON Lines: each value the server's text (SQL NULL null), in an
    -- object of exactly those three members
    local lines = {}
    for l in H.read(dir .. "/out.jsonl"):gmatch("[^\n]+") do lines[#lines + 1] = l end
    local want = {}
    for l in (psql([[SELECT '"id":' || id || E'\t"j":' || coalesce(j::text, 'null')
                     || E'\t"jb":' || coalesce(jb::text, 'null') FROM jf_src ORDER BY id]])
              .. "\n"):gmatch("([^\n]*)\n") do
      want[#want + 1] = l
    end
    assert.equal(11, #lines)
    for i, l in ipairs(lines) do
      local size = 4
      for part in want[i]:gmatch("[^\t]+") do
        assert.truthy(l:find(part, 1, true), l .. " lacks " .. part)
        size = size + #part
      end
      assert.equal(size, #l, l)
    end
    -- CSV: as the server's own CSV writer prints the text (NULL empty)
    assert.equal(H.output("psql " .. H.q(URL) .. " -Atqc "
                          .. H.q("COPY (SELECT id, j, jb FROM jf_src ORDER BY id) TO STDOUT "
                                 .. "(FORMAT csv, HEADER)")),
                 H.read(dir .. "/out.csv"))
    -- SQLite: the text, NULL as NULL
    assert.equal(psql("SELECT id, j::text, jb::text, (j IS NULL)::int FROM jf_src ORDER BY id"),
                 (H.output("sqlite3 " .. H.q(dir .. "/out.db")
                           .. " 'SELECT id, j, jb, j IS NULL FROM t ORDER BY id'"):gsub("%s+$", "")))
    -- a task's output embeds a json value as its text
    -- a task's output embeds a json value as its text (as stored)
    assert.equal('{"jb":9007199254740993}',
                 (H.output("sqlite3 " .. H.q(dir .. "/.weir/weir.db")
                           .. " 'SELECT output FROM task_runs'"):gsub("%s+$", "")))
  end)
end)
