-- daily_aggregate: one day of a PostgreSQL table summed into a table of
-- daily figures, the day from the run's logical time when scheduled.
return pipeline {
  name = "daily_aggregate",
  description = "a daily aggregate that backfills by logical time",
  template = {
    version = "1.0.0",
    summary = "Aggregate one day of a PostgreSQL table by the run's logical time (or a day param); backfills work",
    description = [[
Aggregates the rows of `source_table` whose `time_column` falls on one
UTC day, grouped by `group_by`, into `target_table` (columns `day`, the
`group_by` columns and one per `measures` entry: `{ out = "sum:amount" }`
with sum, count, min, max or avg; `count:*` counts rows). The day is the
day before the run's logical time when the run was scheduled (a `0 2 * *
*` run at 02:00 on the 8th aggregates the 7th), so `weir backfill`
rebuilds past days; otherwise the `day` param, else yesterday. The day's
rows in the target are replaced in one transaction (replace_partition):
a retried attempt, a killed worker or a re-run leaves one set of rows per
day.]],
    reads = { "`source_table` on `db`" },
    writes = { "`target_table` on `db` (the day replaced)" },
    example = "weir run template:daily_aggregate --param db=warehouse --param source_table=orders "
      .. "--param time_column=created_at --param target_table=orders_daily "
      .. "--param 'group_by=[\"country\"]' --param 'measures={\"revenue\":\"sum:amount\",\"orders\":\"count:*\"}' "
      .. "--param day=2026-12-06",
  },
  params = {
    db = { type = "string", description = "the PostgreSQL connection", examples = { "warehouse" } },
    source_table = { type = "string", description = "the rows", examples = { "orders" } },
    time_column = { type = "string", description = "the row's time (timestamp or timestamptz)",
                    examples = { "created_at" } },
    target_table = { type = "string", description = "the daily figures (created when missing)",
                     examples = { "orders_daily" } },
    group_by = { type = "array", items = { type = "string" }, default = {},
                 description = "the columns to group by", examples = { { "country" } } },
    measures = { type = "object", description = "output column -> FUNCTION:COLUMN",
                 examples = { { revenue = "sum:amount", orders = "count:*" } } },
    day = { type = "string", default = "",
            description = "YYYY-MM-DD when the run has no logical time (default: yesterday, UTC)",
            examples = { "2026-12-06" } },
  },
  defaults = { retries = 2, retry_delay = "2s" },
  tasks = {
    aggregate = task {
      run = function(ctx)
        local p = ctx.params
        local db = ctx.source(p.db)
        local day
        if ctx.run.logical_time then
          day = db:rows("SELECT (($1::timestamptz AT TIME ZONE 'UTC')::date - 1)::text AS d",
                        { ctx.run.logical_time })[1].d
        elseif p.day ~= "" then
          if not p.day:match("^%d%d%d%d%-%d%d%-%d%d$") then ctx.fail("day: expected YYYY-MM-DD, got " .. p.day) end
          day = p.day
        else
          day = db:rows("SELECT ((now() AT TIME ZONE 'UTC')::date - 1)::text AS d")[1].d
        end
        local FNS = { sum = "sum", count = "count", min = "min", max = "max", avg = "avg" }
        local cols, groups = { "$1::date AS day" }, {}
        for _, g in ipairs(p.group_by) do
          cols[#cols + 1] = ctx.ident(g)
          groups[#groups + 1] = ctx.ident(g)
        end
        local outs = {}
        for out in pairs(p.measures) do outs[#outs + 1] = out end
        table.sort(outs)
        for _, out in ipairs(outs) do
          local fn, col = tostring(p.measures[out]):match("^(%a+):(.+)$")
          if not fn or not FNS[fn] then
            ctx.fail("measures." .. out .. ": expected FUNCTION:COLUMN (sum, count, min, max, avg)")
          end
          cols[#cols + 1] = FNS[fn] .. "(" .. (col == "*" and "*" or ctx.ident(col)) .. ") AS " .. ctx.ident(out)
        end
        local tc = ctx.ident(p.time_column)
        local sql = "SELECT " .. table.concat(cols, ", ") .. " FROM " .. ctx.ident(p.source_table)
          .. " WHERE " .. tc .. " >= $1::date AND " .. tc .. " < $1::date + 1"
        if #groups > 0 then sql = sql .. " GROUP BY " .. table.concat(groups, ", ") end
        local res = db:query(sql, { day })
          :into(db, p.target_table, { mode = "replace_partition", partition = "day" })
        return { day = day, rows = res.rows, skipped = res.skipped or false }
      end,
    },
  },
}
