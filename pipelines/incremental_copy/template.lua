-- incremental_copy: copy the new and changed rows of a PostgreSQL table
-- into another table (same or another server), by a watermark column.
--
-- State lives in the destination itself: the high-water mark is the
-- largest watermark value the target table holds, read at the start of
-- each run, and it commits with the rows it stands for (one load, one
-- transaction), so there is no state to lose or to drift. Rows are taken
-- from the high-water mark minus `lookback` and upserted by key: a row
-- committed late with an older watermark value is still caught when it
-- committed within the lookback window, and a row read twice updates
-- itself instead of duplicating (no gap, no overlap).
return pipeline {
  name = "incremental_copy",
  description = "incremental copy by a watermark column, upserted by key",
  template = {
    version = "1.0.0",
    summary = "Copy new and changed rows of a PostgreSQL table by a watermark column, "
      .. "no gap and no overlap",
    description = [[
Each run reads the rows of `source_table` whose `watermark` is at least
the largest `watermark` already in `target_table` minus `lookback`, and
upserts them by `key` (the whole table on the first run). The high-water
mark is read from the target table, so it commits with the rows: a
retried attempt, a killed worker or a re-run copies nothing twice. Rows
committed late with an older watermark value (a long transaction that
stamped `now()` at its start) are copied when they are at most `lookback`
older than the high-water mark: set it above your longest writing
transaction. A timestamp watermark takes an interval (`"15 minutes"`), a
numeric one a number (`"1000"`).]],
    reads = { "`source_table` on `source`" },
    writes = { "`target_table` on `target` (upsert by `key`)" },
    example = "weir run template:incremental_copy --param source=app --param source_table=orders "
      .. "--param target=warehouse --param target_table=raw.orders --param 'key=[\"id\"]' "
      .. "--param watermark=updated_at",
  },
  params = {
    source = { type = "string", description = "the PostgreSQL connection to read", examples = { "app" } },
    source_table = { type = "string", description = "the table to copy", examples = { "public.orders" } },
    target = { type = "string", description = "the PostgreSQL connection to write", examples = { "warehouse" } },
    target_table = { type = "string", description = "the copy (created when missing)",
                     examples = { "raw.orders" } },
    key = { type = "array", items = { type = "string" }, description = "the key columns",
            examples = { { "id" } } },
    watermark = { type = "string", description = "a column that grows when a row is written",
                  examples = { "updated_at" } },
    lookback = { type = "string", default = "0",
                 description = "how far behind the high-water mark to read again: an interval "
                   .. "for a timestamp watermark, a number otherwise" },
  },
  defaults = { retries = 2, retry_delay = "2s" },
  tasks = {
    copy = task {
      run = function(ctx)
        local p = ctx.params
        local src, dst = ctx.source(p.source), ctx.sink(p.target)
        local wm = ctx.ident(p.watermark)
        local high
        local ok, rows = pcall(dst.rows, dst, "SELECT max(" .. wm .. ")::text AS hw FROM "
                               .. ctx.ident(p.target_table))
        if ok and rows[1] and rows[1].hw ~= ctx.NULL then high = rows[1].hw end
        local s
        if high == nil then
          s = src:query("SELECT * FROM " .. ctx.ident(p.source_table))
        else
          local ty
          for _, c in ipairs(src:columns(p.source_table)) do
            if c.name == p.watermark then ty = c.type end
          end
          if not ty then ctx.fail("no column " .. p.watermark .. " in " .. p.source_table) end
          local timeish = ty:find("time") or ty:find("date")
          local bound = timeish and "($1::text)::timestamptz - ($2::text)::interval"
            or "($1::text)::numeric - ($2::text)::numeric"
          s = src:query("SELECT * FROM " .. ctx.ident(p.source_table) .. " WHERE " .. wm
                        .. " >= " .. bound, { high, p.lookback })
        end
        local res = s:into(dst, p.target_table, { mode = "upsert", key = p.key })
        return { rows = res.rows, from = high, skipped = res.skipped or false }
      end,
    },
  },
}
