-- csv_to_table: load a dropped CSV or JSON Lines file into a table of
-- SQLite or PostgreSQL, bad rows to a dead-letter file, each file once.
--
-- Exactly once: the rows carry the file's name in a column (`_file`), and
-- a file whose name the table already holds is skipped. That mark and
-- the rows commit in the same transaction (the load itself), so neither a
-- retried attempt, a killed worker nor a re-run loads a file twice. In
-- one run the load ledger (_weir_loads) also skips a committed load.
return pipeline {
  name = "csv_to_table",
  description = "file-drop ingestion into a table, once per file",
  template = {
    version = "1.0.0",
    summary = "Load a dropped CSV or JSON Lines file into SQLite or PostgreSQL, once per file, "
      .. "bad rows to dead letters",
    description = [[
Reads the file `path` (CSV with a header, or JSON Lines: `format`, by
default from the file's extension) and appends its rows to `table` in
`target`: a SQLite database file (`sqlite:PATH`) or a PostgreSQL
connection of weir.yaml. Each row gets the file's name in the column
`_file`; a file whose name is already in the table is skipped, and that
mark commits with the rows, so a retried attempt, a killed worker or a
re-run never loads a file twice. Rows that do not parse or do not fit
`types` go to `dead_letter` (JSON lines) and the load goes on (a
retried attempt appends its rejects again). Run it per dropped
file with a files trigger (docs/scheduling.md) passing `${params.path}`.]],
    reads = { "the file `path`" },
    writes = { "`table` in `target`", "`dead_letter` (JSON lines)" },
    example = "weir run template:csv_to_table --param path=incoming/orders.csv "
      .. "--param target=sqlite:out/shop.db --param table=orders",
  },
  params = {
    path = { type = "string", description = "the file to load (relative to the pipeline's folder)",
             examples = { "incoming/orders-2026-12-07.csv" } },
    target = { type = "string",
               description = "`sqlite:PATH` (a SQLite file) or a PostgreSQL connection of weir.yaml",
               examples = { "sqlite:out/shop.db", "warehouse" } },
    table = { type = "string", description = "the table (created from the file's columns when missing)",
              examples = { "orders" } },
    format = { type = "string", enum = { "auto", "csv", "jsonl" }, default = "auto",
               description = "the file's format; auto: .jsonl/.ndjson are JSON Lines, others CSV" },
    types = { type = "object", default = {},
              description = "CSV column types (column -> number, integer or boolean); "
                .. "a value that does not fit is a bad row",
              examples = { { amount = "number", id = "integer" } } },
    dead_letter = { type = "string", default = "dead_letters/csv_to_table.jsonl",
                    description = "the JSON Lines file bad rows are appended to" },
  },
  defaults = { retries = 2, retry_delay = "1s" },
  tasks = {
    load = task {
      run = function(ctx)
        local p = ctx.params
        local name = p.path:match("([^/]+)$")
        local db
        if p.target:sub(1, 7) == "sqlite:" then
          db = ctx.sqlite(p.target:sub(8))
        else
          db = ctx.sink(p.target)
        end
        local tbl = ctx.ident(p.table)
        local ok, seen = pcall(db.rows, db, "SELECT 1 AS x FROM " .. tbl
                               .. " WHERE _file = $1 LIMIT 1", { name })
        if ok and #seen > 0 then
          ctx.log("%s: already loaded into %s, skipped", name, p.table)
          return { file = name, rows = 0, skipped = true }
        end
        local fmt = p.format
        if fmt == "auto" then
          fmt = (p.path:match("%.jsonl$") or p.path:match("%.ndjson$")) and "jsonl" or "csv"
        end
        local src
        if fmt == "jsonl" then
          src = ctx.jsonl(p.path, { dead_letter = p.dead_letter })
        else
          local types = next(p.types) and p.types or nil
          src = ctx.csv(p.path, { dead_letter = p.dead_letter, types = types })
        end
        local res = src:map(function(r)
          r._file = name
          return r
        end):into(db, p.table, { mode = "append" })
        return { file = name, rows = res.rows, skipped = res.skipped or false }
      end,
    },
  },
}
