-- examples/postgres_etl: orders from an operational schema, cleaned and
-- upserted into an analytics schema, then a daily summary that replaces
-- only the days it recomputes, and a quality check. Run it with ./run.sh.
return pipeline {
  name = "postgres_etl",
  description = "orders -> analytics.orders_clean (upsert) -> analytics.daily (replace_partition)",
  params = { since = { type = "string", default = "2026-01-01" } },
  defaults = { retries = 2, retry_delay = "1s", timeout = "5m", memory = "128MB" },
  tasks = {
    -- demo data: 50,000 orders over 30 days (a real pipeline has them already)
    seed = task {
      run = function(ctx)
        local shop = ctx.source("shop")
        shop:exec("CREATE SCHEMA IF NOT EXISTS shop")
        shop:exec("CREATE SCHEMA IF NOT EXISTS analytics")
        shop:exec([[CREATE TABLE IF NOT EXISTS shop.orders (
          id bigint PRIMARY KEY, email text, amount numeric(12,2), status text,
          created_at timestamptz, tags text[])]])
        return { inserted = shop:exec([[INSERT INTO shop.orders
          SELECT g, CASE WHEN g % 97 = 0 THEN NULL ELSE 'User' || (g % 5000) || '@Example.COM' END,
                 round((g % 1000) * 1.37, 2), (ARRAY['paid', 'refunded', 'pending'])[1 + g % 3],
                 TIMESTAMPTZ '2026-01-01' + (g % 30) * interval '1 day' + (g % 86400) * interval '1 s',
                 ARRAY['web', CASE WHEN g % 2 = 0 THEN 'promo' ELSE 'organic' END]
          FROM generate_series(1, 50000) g ON CONFLICT (id) DO NOTHING]]) }
      end,
    },

    -- stream the orders (a cursor: the query has a parameter), clean each
    -- row in Lua, upsert by primary key into the analytics schema
    clean = task {
      after = { "seed" },
      run = function(ctx)
        return ctx.source("shop")
          :query("SELECT id, email, amount, status, created_at, tags FROM shop.orders "
                 .. "WHERE created_at >= $1::timestamptz", { ctx.params.since })
          :filter(function(r) return r.email ~= ctx.NULL and r.status ~= "pending" end)
          :map(function(r)
            r.email = r.email:lower()
            r.day = r.created_at:sub(1, 10)
            r.promo = r.tags[2] == "promo"
            r.tags = nil
            return r
          end)
          :into(ctx.sink("analytics"), "analytics.orders_clean", { mode = "upsert", key = "id" })
      end,
    },

    -- per-day totals, recomputed for the days present in the data; other
    -- days of analytics.daily stay as they are
    daily = task {
      after = { "clean" },
      run = function(ctx)
        return ctx.source("analytics")
          :query([[SELECT day, count(*)::int8 AS orders, sum(amount)::numeric(14,2) AS revenue,
                          count(*) FILTER (WHERE promo)::int8 AS promo_orders
                   FROM analytics.orders_clean GROUP BY day ORDER BY day]])
          :into(ctx.sink("analytics"), "analytics.daily",
                { mode = "replace_partition", partition = "day" })
      end,
    },

    quality = task {
      after = { "daily" },
      run = function(ctx)
        local a = ctx.source("analytics")
        local r = a:rows([[SELECT count(*) AS n, count(*) FILTER (WHERE email IS NULL) AS null_emails,
                                  count(DISTINCT id) AS ids FROM analytics.orders_clean]])[1]
        if r.n == 0 or r.null_emails > 0 or r.ids ~= r.n then
          ctx.fail(string.format("quality: %d rows, %d null emails, %d ids", r.n, r.null_emails, r.ids))
        end
        local days = a:rows("SELECT count(*) AS days, sum(revenue) AS revenue FROM analytics.daily")[1]
        ctx.log("orders_clean: %d rows; daily: %d days, revenue %s", r.n, days.days, days.revenue)
        return { rows = r.n, days = days.days, revenue = days.revenue }
      end,
    },
  },
}
