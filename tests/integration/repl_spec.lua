-- weir repl against the real PostgreSQL of scripts/services.sh, through a
-- real terminal (tests/lua/pty.lua): completion of table and column names
-- read from the live server, a preview that reads only what it shows,
-- and Ctrl-C cancelling a running query on the server.
local H = require("helpers")
local pty = require("pty")
local svc = H.service("pg")

H.describe_with("pg", "weir repl with PostgreSQL", function()
  local dir, admin, tbl, big
  local terminals = {}

  local function server_rows(sql, params)
    return (admin:all(sql, params))
  end

  setup(function()
    local pg = require("weir.connectors.postgres")
    admin = pg.connect({ name = "repl_admin", type = "postgres", host = "127.0.0.1",
                         hostaddr = "127.0.0.1", port = svc.port, user = "weir",
                         password = svc.password, database = "postgres", sslmode = "disable" })
    local tag = tostring(os.time()) .. "_" .. math.random(1, 1e6)
    tbl, big = "repl_orders_" .. tag, "repl_big_" .. tag
    admin:run("CREATE TABLE " .. tbl .. " (order_id int, customer_region text, amount numeric)")
    admin:run("INSERT INTO " .. tbl .. " VALUES (1, 'north', 10.5), (2, NULL, 3)")
    admin:run("CREATE TABLE " .. big .. " AS SELECT g AS id, md5(g::text) AS h "
              .. "FROM generate_series(1, 300000) g")
  end)

  teardown(function()
    if admin then
      pcall(function() admin:run("DROP TABLE IF EXISTS " .. tbl .. ", " .. big) end)
      require("weir.connectors.postgres").close_all()
    end
  end)

  before_each(function()
    dir = H.tmpdir()
    H.write(dir .. "/weir.yaml", H.yaml("pg", "wh", svc.port))
  end)
  after_each(function()
    for i = #terminals, 1, -1 do terminals[i]:close(); terminals[i] = nil end
    H.cleanup(dir)
  end)

  -- Type line (Enter included) and wait for the next prompt; returns what
  -- came between.
  local function typed(p, line)
    p:type(line .. "\r")
    return p:expect("weir> ")
  end

  local function repl()
    local p = pty.spawn(string.format(
      "cd %s && exec env WEIR_HOME=%s WEIR_PW=%s TERM=xterm PAGER=cat %s repl", H.q(dir),
      H.q(dir .. "/.weir"), H.q(svc.password), H.q(H.bin)))
    terminals[#terminals + 1] = p
    p:expect("weir> ")
    return p
  end

  it("completes connection, table, column and method names from the live server", function()
    local p = repl()
    -- the connection name, then a method, then a column of a table the
    -- query names only after the cursor
    typed(p, 'db = ctx.source("w\t")')
    local shown = typed(p, 'db:que\t("SELECT customer_re\t FROM ' .. tbl .. ' ORDER BY order_id")')
    assert.matches("customer_region", shown, 1, true)
    assert.matches("north", shown, 1, true)
    assert.matches("NULL", shown, 1, true)
    assert.matches("(2 rows)", shown, 1, true)
    assert.matches(tbl, typed(p, ".tables wh"), 1, true)
    assert.matches("n\r?\nint8", typed(p, ".sql wh SELECT count(*) AS n FROM " .. tbl))
    -- a table name after .schema
    shown = typed(p, ".schema wh " .. tbl:sub(1, 14) .. "\t")
    assert.matches("customer_region | text", shown, 1, true)
    p:type("\4")
    assert.equal(0, p:wait(10))
  end)

  it("previews a large query with the limit on the server; .last shows all", function()
    local p = repl()
    typed(p, ".timer on")
    local shown = typed(p, 'ctx.source("wh"):query("SELECT * FROM ' .. big .. ' ORDER BY id")')
    assert.matches("(20 rows, more exist: .last shows them all)", shown, 1, true)
    -- the limit reached the server: 21 rows came (20 and one to know)
    local read = tonumber(shown:match("(%d+) rows read"))
    assert.equal(21, read, shown)
    -- a WITH that changes data is not wrapped (it must stay at the top)
    shown = typed(p, 'ctx.source("wh"):query("WITH d AS (DELETE FROM ' .. tbl
                     .. ' WHERE false RETURNING *) SELECT * FROM d")')
    assert.matches("(0 rows)", shown, 1, true)
    -- .last: the whole result, the query run again without the limit
    shown = typed(p, 'ctx.source("wh"):query("SELECT g FROM generate_series(1, 45) g")')
    assert.matches("(20 rows, more exist", shown, 1, true)
    shown = typed(p, ".last")
    assert.matches("\n%s*1\r?\n", shown)
    assert.matches("\n%s*45\r?\n", shown)
    -- the next result drops the query: its backend goes away
    typed(p, "1")
    assert.truthy(H.wait_for(function()
      return #server_rows("SELECT 1 FROM pg_stat_activity WHERE query LIKE $1 "
                          .. "AND application_name LIKE 'weir repl %'",
                          { "%FROM " .. big .. "%" }) == 0
    end, 10))
    p:type("\4")
    p:wait(10)
  end)

  it("cancels a running query on the server on Ctrl-C and keeps the session", function()
    local p = repl()
    typed(p, "kept = 'yes'")
    p:type('ctx.source("wh"):exec("SELECT pg_sleep(300)")\r')
    local function running()
      return server_rows("SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(300)' "
                         .. "AND state = 'active' AND application_name LIKE 'weir repl %'")
    end
    assert.truthy(H.wait_for(function() return #running() == 1 end, 20), "the query never ran")
    p:send("\3")
    assert.matches("interrupted", p:expect("weir> "), 1, true)
    -- cancelled on the server, not left running behind a dead client
    assert.truthy(H.wait_for(function() return #running() == 0 end, 5))
    assert.matches('"yes"', typed(p, "kept"), 1, true)
    p:type("\4")
    assert.equal(0, p:wait(10))
  end)
end)
