-- retention: delete the rows older than N days, in bounded batches.
return pipeline {
  name = "retention",
  description = "delete rows older than N days in bounded batches",
  template = {
    version = "1.0.0",
    summary = "Delete rows older than N days from a SQLite or PostgreSQL table, "
      .. "in bounded batches",
    description = [[
Deletes from `table` the rows whose `column` (a timestamp, or ISO 8601
text in SQLite) is older than `days` days before the run's logical time
(a scheduled run) or now, `batch` rows per statement, each batch its own
transaction, so locks stay short and a huge backlog never holds one long
transaction. Deleting is idempotent: a retried attempt, a killed worker
or a re-run deletes what is left, and never a row younger than the
cut-off, which is fixed once per run (from the logical time when there is
one).]],
    reads = { "`table` on `target`" },
    writes = { "`table` on `target` (rows deleted)" },
    example = "weir run template:retention --param target=warehouse --param table=raw.events "
      .. "--param column=received_at --param days=90",
  },
  params = {
    target = { type = "string",
               description = "`sqlite:PATH` (a SQLite file) or a PostgreSQL connection of weir.yaml",
               examples = { "warehouse", "sqlite:out/app.db" } },
    table = { type = "string", description = "the table", examples = { "raw.events" } },
    column = { type = "string", description = "the row's time", examples = { "received_at" } },
    days = { type = "integer", description = "rows older than this many days go", examples = { 90 } },
    batch = { type = "integer", default = 10000, description = "rows per DELETE" },
    max_batches = { type = "integer", default = 100000,
                    description = "stop after this many batches (the next run goes on)" },
  },
  defaults = { retries = 2, retry_delay = "2s" },
  tasks = {
    delete = task {
      run = function(ctx)
        local p = ctx.params
        if p.days < 0 or p.batch < 1 then ctx.fail("days must be >= 0 and batch >= 1") end
        local sqlite = p.target:sub(1, 7) == "sqlite:"
        local db = sqlite and ctx.sqlite(p.target:sub(8)) or ctx.sink(p.target)
        local t, c = ctx.ident(p.table), ctx.ident(p.column)
        local now = ctx.run.logical_time
        local cutoff
        if sqlite then
          now = now and now:gsub("Z$", "") or os.date("!%Y-%m-%dT%H:%M:%S")
          cutoff = db:rows("SELECT strftime('%Y-%m-%dT%H:%M:%S', $1, $2) AS c",
                           { now, "-" .. p.days .. " days" })[1].c
        else
          cutoff = db:rows("SELECT (coalesce($1::timestamptz, now()) - make_interval(days => $2))::text AS c",
                           { now or ctx.NULL, p.days })[1].c
        end
        local sql
        if sqlite then
          sql = "DELETE FROM " .. t .. " WHERE rowid IN (SELECT rowid FROM " .. t .. " WHERE "
            .. c .. " < $1 LIMIT $2)"
        else
          sql = "DELETE FROM " .. t .. " WHERE ctid = ANY (ARRAY(SELECT ctid FROM " .. t
            .. " WHERE " .. c .. " < $1::timestamptz LIMIT $2))"
        end
        local total, batches = 0, 0
        repeat
          local n = db:exec(sql, { cutoff, p.batch })
          total, batches = total + n, batches + 1
        until n < p.batch or batches >= p.max_batches
        ctx.log("deleted %d rows older than %s in %d batches", total, cutoff, batches)
        return { deleted = total, cutoff = cutoff, batches = batches }
      end,
    },
  },
}
