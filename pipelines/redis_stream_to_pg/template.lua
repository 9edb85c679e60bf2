-- redis_stream_to_pg: a Redis stream consumer loading batches into
-- PostgreSQL, acknowledging each batch only after it committed.
return pipeline {
  name = "redis_stream_to_pg",
  description = "Redis stream consumer group into PostgreSQL, ack after commit",
  template = {
    version = "1.0.0",
    summary = "Consume a Redis stream (consumer group) into a PostgreSQL table, acknowledging after commit",
    description = [[
Reads `stream` as consumer `consumer` of the group `group` (created at
the stream's start when missing) in batches of `batch` entries: first the
entries delivered to this consumer and never acknowledged (a killed
worker's), then new ones. Each batch is inserted into `table` (`stream_id`
text primary key plus one text column per entry of `fields`; created when
missing) in one transaction with `ON CONFLICT (stream_id) DO NOTHING`,
and acknowledged (`XACK`) only after the commit. So an entry is loaded
exactly once: an attempt killed before its commit leaves its entries
pending for the next, one killed between commit and XACK makes the next
insert nothing and acknowledge them. Stops when nothing is left, or after
`max_batches` batches.]],
    reads = { "`stream` on `redis` (group `group`)" },
    writes = { "`table` on `db`" },
    example = "weir run template:redis_stream_to_pg --param redis=cache --param stream=events "
      .. "--param db=warehouse --param table=raw.events --param 'fields=[\"user\",\"action\"]'",
  },
  params = {
    redis = { type = "string", description = "the Redis connection", examples = { "cache" } },
    stream = { type = "string", description = "the stream key", examples = { "events" } },
    group = { type = "string", default = "weir", description = "the consumer group" },
    consumer = { type = "string", default = "weir", description = "this consumer's name in the group" },
    db = { type = "string", description = "the PostgreSQL connection", examples = { "warehouse" } },
    table = { type = "string", description = "the target table", examples = { "raw.events" } },
    fields = { type = "array", items = { type = "string" },
               description = "the entry fields to keep, one text column each", examples = { { "user", "action" } } },
    batch = { type = "integer", default = 500, description = "entries per transaction" },
    max_batches = { type = "integer", default = 1000, description = "stop after this many batches" },
  },
  defaults = { retries = 2, retry_delay = "1s" },
  tasks = {
    consume = task {
      run = function(ctx)
        local p = ctx.params
        local r, db = ctx.source(p.redis), ctx.sink(p.db)
        local I = ctx.ident
        local tbl = I(p.table)
        local cols, marks = { "stream_id" }, { "$1" }
        local defs = { "stream_id text PRIMARY KEY" }
        for i, f in ipairs(p.fields) do
          cols[i + 1], marks[i + 1] = I(f), "$" .. (i + 1)
          defs[#defs + 1] = I(f) .. " text"
        end
        db:exec("CREATE TABLE IF NOT EXISTS " .. tbl .. " (" .. table.concat(defs, ", ") .. ")")
        local insert = "INSERT INTO " .. tbl .. " (" .. table.concat(cols, ", ") .. ") VALUES ("
          .. table.concat(marks, ", ") .. ") ON CONFLICT (stream_id) DO NOTHING"
        local ok, err = pcall(r.command, r, "XGROUP", "CREATE", p.stream, p.group, "0", "MKSTREAM")
        if not ok and not tostring(err):find("BUSYGROUP", 1, true) then error(err, 0) end
        local loaded, acked, batches = 0, 0, 0
        local from = "0" -- our pending entries first, then new ones (">")
        while batches < p.max_batches do
          local reply = r:command("XREADGROUP", "GROUP", p.group, p.consumer, "COUNT", p.batch,
                                  "STREAMS", p.stream, from)
          local entries = type(reply) == "table" and reply[1] and reply[1][2] or {}
          if #entries == 0 then
            if from == ">" then break end
            from = ">"
          else
            batches = batches + 1
            local ids = {}
            db:transaction(function(tx)
              for _, e in ipairs(entries) do
                local id, kv = e[1], e[2]
                ids[#ids + 1] = id
                if type(kv) == "table" then -- nil: the entry was deleted meanwhile
                  local row = {}
                  for i = 1, #kv, 2 do row[kv[i]] = kv[i + 1] end
                  local vals = { id }
                  for i, f in ipairs(p.fields) do vals[i + 1] = row[f] or ctx.NULL end
                  loaded = loaded + tx:exec(insert, vals)
                end
              end
            end)
            acked = acked + r:command("XACK", p.stream, p.group, unpack(ids))
          end
        end
        return { loaded = loaded, acknowledged = acked, batches = batches }
      end,
    },
  },
}
