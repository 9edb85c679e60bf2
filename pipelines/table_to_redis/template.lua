-- table_to_redis: warm a Redis cache from a table (reverse ETL).
return pipeline {
  name = "table_to_redis",
  description = "reverse ETL: a table's rows as Redis hashes",
  template = {
    version = "1.0.0",
    summary = "Warm a Redis cache from a SQLite or PostgreSQL query: one hash per row, with a TTL",
    description = [[
Runs `query` on `source` and writes each row to Redis as the hash
`prefix` + the row's `key` column (`HSET` of the other columns, `EXPIRE
ttl` when ttl > 0). Writing a hash by key is idempotent: a retried
attempt, a killed worker or a re-run rewrites the same keys with the same
values. NULL columns are left out of the hash.]],
    reads = { "`query` on `source`" },
    writes = { "hashes `prefix`KEY on `redis`" },
    example = "weir run template:table_to_redis --param source=warehouse --param redis=cache "
      .. "--param 'query=SELECT id, name, score FROM players' --param key=id --param prefix=player:",
  },
  params = {
    source = { type = "string",
               description = "`sqlite:PATH` (a SQLite file) or a PostgreSQL connection of weir.yaml",
               examples = { "warehouse" } },
    query = { type = "string", description = "the rows to cache (a SELECT)",
              examples = { "SELECT id, name, score FROM players" } },
    redis = { type = "string", description = "the Redis connection", examples = { "cache" } },
    key = { type = "string", description = "the column that names each hash", examples = { "id" } },
    prefix = { type = "string", default = "", description = "put before the key", examples = { "player:" } },
    ttl = { type = "integer", default = 0, description = "seconds each hash lives (0: no expiry)" },
  },
  defaults = { retries = 2, retry_delay = "1s" },
  tasks = {
    warm = task {
      run = function(ctx)
        local p = ctx.params
        local src = p.source:sub(1, 7) == "sqlite:" and ctx.sqlite(p.source:sub(8)) or ctx.source(p.source)
        local k, prefix = p.key, p.prefix
        local res = src:query(p.query)
          :map(function(r)
            local id = r[k]
            if id == nil or id == ctx.NULL then error("key column " .. k .. " is NULL") end
            r[k] = nil
            r._weir_key = prefix .. tostring(id)
            return r
          end)
          :into(ctx.sink(p.redis), "hset", { key = "_weir_key", ttl = p.ttl > 0 and p.ttl or nil })
        return { rows = res.rows }
      end,
    },
  },
}
