-- dedupe_latest: keep the latest row of each key of a PostgreSQL table.
return pipeline {
  name = "dedupe_latest",
  description = "de-duplication keeping the latest row per key",
  template = {
    version = "1.0.0",
    summary = "Write the latest row of each key of a PostgreSQL table to a deduplicated table",
    description = [[
Reads `source_table` and writes to `target_table` one row per `key`: the
one with the greatest `order_by` (ties broken by `tie_break` when given,
else by the whole row's text, so the choice is the same on every run).
The target is replaced in one transaction: readers see the old or the new
table, and a retried attempt, a killed worker or a re-run leaves the same
rows. Runs in the server (`DISTINCT ON`): the rows never leave it.]],
    reads = { "`source_table` on `db`" },
    writes = { "`target_table` on `db` (replaced)" },
    example = "weir run template:dedupe_latest --param db=warehouse --param source_table=raw.events "
      .. "--param target_table=clean.events --param 'key=[\"event_id\"]' --param order_by=received_at",
  },
  params = {
    db = { type = "string", description = "the PostgreSQL connection", examples = { "warehouse" } },
    source_table = { type = "string", description = "the table with duplicates", examples = { "raw.events" } },
    target_table = { type = "string", description = "the deduplicated table (created when missing)",
                     examples = { "clean.events" } },
    key = { type = "array", items = { type = "string" }, description = "the key columns",
            examples = { { "event_id" } } },
    order_by = { type = "string", description = "the latest row has the greatest value",
                 examples = { "received_at" } },
    tie_break = { type = "string", default = "", description = "a column that orders rows with the same order_by" },
  },
  defaults = { retries = 2, retry_delay = "2s" },
  tasks = {
    dedupe = task {
      run = function(ctx)
        local p = ctx.params
        local db = ctx.source(p.db)
        local keys = {}
        for i, k in ipairs(p.key) do keys[i] = ctx.ident(k) end
        local k = table.concat(keys, ", ")
        local t = ctx.ident(p.source_table)
        local order = k .. ", " .. ctx.ident(p.order_by) .. " DESC"
        if p.tie_break ~= "" then order = order .. ", " .. ctx.ident(p.tie_break) .. " DESC" end
        -- the alias names the row as a whole: its text is the last tie-break
        local sql = "SELECT DISTINCT ON (" .. k .. ") src.* FROM " .. t .. " AS src ORDER BY "
          .. order .. ", src::text DESC"
        local res = db:query(sql):into(db, p.target_table, { mode = "replace" })
        return { rows = res.rows, skipped = res.skipped or false }
      end,
    },
  },
}
