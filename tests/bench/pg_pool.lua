-- pg_pool.lua - cost of a short parameterised PostgreSQL query through
-- weir's connection pool, next to connecting anew for every query. A
-- trusted script (tests/bench/pg_etl.sh runs it; a measurement, never an
-- assertion on time):
--
--   WEIR_TEST_PG_URL=postgres://USER:PASSWORD@HOST:PORT/DB \
--     build/weir script tests/bench/pg_pool.lua [QUERIES]
--
-- Prints one line per variant: "<variant> <queries> <elapsed ms>", where
-- variant is "pooled" (one warm connection reused by every query) or
-- "connect" (the pools are closed after each query, so the next one
-- connects and authenticates again). QUERIES defaults to 1000.
local pg = require("weir.connectors.postgres")
local C = require("weir._ffi").C

local queries = tonumber(arg and arg[1] or nil) or 1000
local url = os.getenv("WEIR_TEST_PG_URL")
if not url then
  io.stderr:write("pg_pool.lua: WEIR_TEST_PG_URL is not set\n")
  return 2
end
-- the URL services.sh writes: an IPv4 address and a hex password, no escapes
local user, password, host, port, database =
  url:match("^postgres%a*://([^:@/]+):([^@]*)@([^:/]+):(%d+)/([^?]+)")
if not user then
  io.stderr:write("pg_pool.lua: cannot parse WEIR_TEST_PG_URL (postgres://U:P@HOST:PORT/DB)\n")
  return 2
end
local cfg = {
  name = "bench", type = "postgres", host = host, hostaddr = host, port = tonumber(port),
  user = user, password = password, database = database, sslmode = "disable",
}
local h = pg.connect(cfg)

local function query(i)
  local _, rows = h:exec("SELECT $1::int + 1", { i })
  local got = rows and rows[1] and rows[1]["?column?"]
  if got ~= i + 1 then error(string.format("query %d returned %s", i, tostring(got)), 0) end
end

local function backend_pid()
  local _, rows = h:exec("SELECT pg_backend_pid() AS pid")
  return rows[1].pid
end

-- pooled: the first query opens the connection (not timed), then every
-- query checks it out of the pool and back
query(0)
local pid0 = backend_pid()
local t0 = C.weir_ffi_now_mono_ms()
for i = 1, queries do query(i) end
local pooled = C.weir_ffi_now_mono_ms() - t0
if backend_pid() ~= pid0 then error("pooled loop changed connection", 0) end

-- connect per query: pg.close_all() closes the pools (weir_ffi_pg_pools_close)
-- and forgets weir.pg's handle on them, so the next call builds a pool and
-- opens a new connection (TCP, startup, SCRAM authentication, session
-- settings). Calling the C function alone would leave weir.pg holding a
-- freed pool.
pg.close_all()
local t1 = C.weir_ffi_now_mono_ms()
for i = 1, queries do
  query(i)
  pg.close_all()
end
local connect = C.weir_ffi_now_mono_ms() - t1
local a = backend_pid(); pg.close_all()
local b = backend_pid(); pg.close_all()
if a == b then error("connect-per-query reused a connection", 0) end

io.write(string.format("pooled %d %.3f\n", queries, pooled))
io.write(string.format("connect %d %.3f\n", queries, connect))
return 0
