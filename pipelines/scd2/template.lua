-- scd2: a slowly changing dimension, type 2, merged in PostgreSQL.
return pipeline {
  name = "scd2",
  description = "slowly changing dimension type 2 merge in PostgreSQL",
  template = {
    version = "1.0.0",
    summary = "Merge a snapshot table into a type 2 slowly changing dimension in PostgreSQL",
    description = [[
Compares `source_table` (the current state: one row per `key`) with the
current rows of `target_table` and, in one transaction, closes the
versions whose tracked columns changed or whose key disappeared
(`valid_to` = the change time, `is_current` false) and inserts a version
(`valid_from` = the change time, `valid_to` NULL) for every new, changed
or returning key. The change time is the run's logical time when it was
scheduled, else the `as_of` param, else now(). A second change with the
same change time as the current version replaces it in place (one
version per key and instant). Changes are found by a hash of the tracked
columns (`row_hash`), so a re-run, a retried attempt or a killed worker's
retry finds nothing left to do; an `as_of` earlier than the dimension's
latest change is refused. The dimension is created from the source's
columns when missing.]],
    reads = { "`source_table` on `db`" },
    writes = { "`target_table` on `db` (+ valid_from, valid_to, is_current, row_hash)" },
    example = "weir run template:scd2 --param db=warehouse --param source_table=staging.customers "
      .. "--param target_table=dim.customers --param 'key=[\"customer_id\"]'",
  },
  params = {
    db = { type = "string", description = "the PostgreSQL connection", examples = { "warehouse" } },
    source_table = { type = "string", description = "the current state, one row per key",
                     examples = { "staging.customers" } },
    target_table = { type = "string", description = "the dimension", examples = { "dim.customers" } },
    key = { type = "array", items = { type = "string" }, description = "the business key columns",
            examples = { { "customer_id" } } },
    as_of = { type = "string", default = "",
              description = "the change time (timestamptz text) when the run has no logical time; default now()" },
  },
  defaults = { retries = 2, retry_delay = "2s" },
  tasks = {
    merge = task {
      run = function(ctx)
        local p = ctx.params
        local db = ctx.sink(p.db)
        local I = ctx.ident
        local src, dim = I(p.source_table), I(p.target_table)
        local is_key, keys, cols = {}, {}, {}
        for i, k in ipairs(p.key) do is_key[k] = true; keys[i] = I(k) end
        for _, c in ipairs(db:columns(p.source_table)) do
          if not is_key[c.name] then cols[#cols + 1] = I(c.name) end
        end
        if #keys == 0 then ctx.fail("key: at least one column") end
        local function list(prefix, names)
          local out = {}
          for i, n in ipairs(names) do out[i] = prefix .. n end
          return table.concat(out, ", ")
        end
        local function join(a, b)
          local out = {}
          for i, k in ipairs(keys) do out[i] = a .. "." .. k .. " = " .. b .. "." .. k end
          return table.concat(out, " AND ")
        end
        local hash = "md5(ROW(" .. (#cols > 0 and list("s.", cols) or "1") .. ")::text)"
        local as_of = ctx.run.logical_time or (p.as_of ~= "" and p.as_of) or ctx.NULL
        local counts = {}
        db:exec("CREATE TABLE IF NOT EXISTS " .. dim .. " AS SELECT s.*, now() AS valid_from, "
                .. "now() AS valid_to, true AS is_current, ''::text AS row_hash FROM " .. src
                .. " AS s WITH NO DATA")
        db:transaction(function(tx)
          local ts = tx:rows("SELECT coalesce($1::timestamptz, now())::text AS ts", { as_of })[1].ts
          counts.as_of = ts
          local bad = tx:rows("SELECT count(*) AS n FROM (SELECT 1 FROM " .. src .. " GROUP BY "
                              .. table.concat(keys, ", ") .. " HAVING count(*) > 1) AS d")[1].n
          if tonumber(bad) > 0 then error(string.format("%s: %d keys appear more than once",
                                                        p.source_table, tonumber(bad)), 0) end
          local last = tx:rows("SELECT (max(valid_from) > $1::timestamptz) AS later FROM " .. dim, { ts })[1]
          if last.later == true then
            error("as_of " .. ts .. " is earlier than the dimension's latest change", 0)
          end
          -- a second change at the current version's own instant
          local sets = {}
          for i, c in ipairs(cols) do sets[i] = c .. " = s." .. c end
          sets[#sets + 1] = "row_hash = " .. hash
          counts.replaced = tx:exec("UPDATE " .. dim .. " AS d SET " .. table.concat(sets, ", ")
            .. " FROM " .. src .. " AS s WHERE d.is_current AND d.valid_from = $1::timestamptz AND "
            .. join("d", "s") .. " AND d.row_hash <> " .. hash, { ts })
          counts.closed = tx:exec("UPDATE " .. dim .. " AS d SET valid_to = $1::timestamptz, "
            .. "is_current = false FROM " .. src .. " AS s WHERE d.is_current AND " .. join("d", "s")
            .. " AND d.row_hash <> " .. hash, { ts })
          counts.gone = tx:exec("UPDATE " .. dim .. " AS d SET valid_to = $1::timestamptz, "
            .. "is_current = false WHERE d.is_current AND NOT EXISTS (SELECT 1 FROM " .. src
            .. " AS s WHERE " .. join("d", "s") .. ")", { ts })
          local all = list("", keys) .. (#cols > 0 and ", " .. list("", cols) or "")
          local sall = list("s.", keys) .. (#cols > 0 and ", " .. list("s.", cols) or "")
          counts.inserted = tx:exec("INSERT INTO " .. dim .. " (" .. all .. ", valid_from, valid_to, "
            .. "is_current, row_hash) SELECT " .. sall .. ", $1::timestamptz, NULL, true, " .. hash
            .. " FROM " .. src .. " AS s WHERE NOT EXISTS (SELECT 1 FROM " .. dim .. " AS d WHERE "
            .. "d.is_current AND " .. join("d", "s") .. ")", { ts })
        end)
        return counts
      end,
    },
  },
}
