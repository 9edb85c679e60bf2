-- The quickstart: clean a CSV export of orders, check the result, and
-- publish a summary.  Run it with:  weir run pipeline.lua
--
-- clean  : CSV -> SQLite table "orders" (upsert by id), emails lowercased,
--          countries uppercased, non-positive amounts dropped; rows that
--          cannot be read go to out/bad_rows.jsonl instead of failing.
-- check  : data quality rules on the loaded table.
-- export : revenue per country as JSON Lines.
return pipeline {
  name = "quickstart",
  description = "Clean a CSV of orders, check it, write SQLite and JSON Lines",
  params = {
    min_amount = { type = "number", default = 0, description = "drop orders at or below" },
  },
  defaults = { retries = 1, retry_delay = "1s", timeout = "1m", memory = "64MB" },
  tasks = {
    clean = task {
      run = function(ctx)
        local db = ctx.sqlite("out/quickstart.db")
        local loaded = ctx.csv("data/orders.csv", {
            types = { id = "integer", amount = "number" },
            dead_letter = "out/bad_rows.jsonl",
          })
          :map(function(r)
            r.email = r.email:lower()
            r.country = r.country:upper()
            return r
          end)
          :filter(function(r) return r.amount > ctx.params.min_amount end)
          :into(db, "orders", { mode = "upsert", key = "id" })
        ctx.log("loaded %d orders", loaded.rows)
        -- rows the CSV reader could not read: counted, and in bad_rows.jsonl
        return { rows = loaded.rows, rejected = loaded.rejected }
      end,
    },
    check = task {
      after = { "clean" },
      run = function(ctx)
        return ctx.check(ctx.sqlite("out/quickstart.db"), "orders", {
          row_count = { min = 1 },
          not_null = { "id", "email" },
          unique = { "id" },
        })
      end,
    },
    export = task {
      after = { "check" },
      run = function(ctx)
        local db = ctx.sqlite("out/quickstart.db")
        local written = db:query([[
            SELECT country, count(*) AS orders, round(sum(amount), 2) AS revenue
            FROM orders GROUP BY country ORDER BY revenue DESC]])
          :to_jsonl("out/revenue_by_country.jsonl")
        return { countries = written.rows, checked = ctx.inputs.check.row_count }
      end,
    },
  },
}
