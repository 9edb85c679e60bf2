-- partitioned_export: a table's rows written to one file per day.
return pipeline {
  name = "partitioned_export",
  description = "partitioned export of a table to JSONL/CSV by date",
  template = {
    version = "1.0.0",
    summary = "Export a SQLite or PostgreSQL table to one JSONL or CSV file per day, each file atomic",
    description = [[
For each UTC day from `from` to `to` (inclusive, YYYY-MM-DD; at most 366
days), writes the rows of `table` whose `date_column` falls on that day to
`dir/DAY.jsonl` (or `.csv`), ordered by `order_by`. Each file is written to
a temporary name and renamed when complete, so a reader sees the old
file or the new one, never half of one; a retried attempt, a killed
worker or a re-run rewrites the same files with the same rows. A day
without rows gives an empty file.]],
    reads = { "`table` on `source`" },
    writes = { "`dir`/YYYY-MM-DD.jsonl or .csv" },
    example = "weir run template:partitioned_export --param source=warehouse --param table=orders "
      .. "--param date_column=created_at --param order_by=id --param dir=export/orders "
      .. "--param from=2026-12-01 --param to=2026-12-07",
  },
  params = {
    source = { type = "string",
               description = "`sqlite:PATH` (a SQLite file) or a PostgreSQL connection of weir.yaml",
               examples = { "warehouse" } },
    table = { type = "string", description = "the table", examples = { "orders" } },
    date_column = { type = "string", description = "the row's date or time", examples = { "created_at" } },
    order_by = { type = "string", description = "the order of rows in a file", examples = { "id" } },
    dir = { type = "string", description = "the folder of the files (relative to the pipeline)",
            examples = { "export/orders" } },
    from = { type = "string", description = "the first day, YYYY-MM-DD", examples = { "2026-12-01" } },
    to = { type = "string", description = "the last day, YYYY-MM-DD", examples = { "2026-12-07" } },
    format = { type = "string", enum = { "jsonl", "csv" }, default = "jsonl", description = "the files' format" },
  },
  defaults = { retries = 2, retry_delay = "1s" },
  tasks = {
    export = task {
      run = function(ctx)
        local p = ctx.params
        local function parse(s, what)
          local y, m, d = tostring(s):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
          if not y then ctx.fail(what .. ": expected YYYY-MM-DD, got " .. tostring(s)) end
          return os.time({ year = tonumber(y), month = tonumber(m), day = tonumber(d), hour = 12 })
        end
        local t0, t1 = parse(p.from, "from"), parse(p.to, "to")
        if t1 < t0 or (t1 - t0) / 86400 > 366 then ctx.fail("from..to must be 1 to 367 days") end
        local sqlite = p.source:sub(1, 7) == "sqlite:"
        local db = sqlite and ctx.sqlite(p.source:sub(8)) or ctx.source(p.source)
        local t, dc, ob = ctx.ident(p.table), ctx.ident(p.date_column), ctx.ident(p.order_by)
        local sql
        if sqlite then
          sql = "SELECT * FROM " .. t .. " WHERE date(" .. dc .. ") = $1 ORDER BY " .. ob
        else
          sql = "SELECT * FROM " .. t .. " WHERE " .. dc .. " >= $1::date AND " .. dc
            .. " < $1::date + 1 ORDER BY " .. ob
        end
        local files = {}
        local day = t0
        while day <= t1 do
          local d = os.date("%Y-%m-%d", day)
          local path = p.dir .. "/" .. d .. "." .. p.format
          local s = db:query(sql, { d })
          local res = p.format == "csv" and s:to_csv(path) or s:to_jsonl(path)
          files[#files + 1] = { day = d, rows = res.rows }
          day = day + 86400
        end
        return { files = files }
      end,
    },
  },
}
