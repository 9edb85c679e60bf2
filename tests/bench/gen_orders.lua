-- gen_orders.lua OUT N: writes N deterministic orders (plus the header) to
-- OUT with the columns of examples/quickstart/data/orders.csv:
-- id,customer,email,country,amount,day. Like the quickstart's generator,
-- every 97th name is quoted with a comma and doubled quotes inside.
-- Run it with the runtime: build/weir script tests/bench/gen_orders.lua OUT N
local out_path, n = arg[1], tonumber(arg[2] or "1000000")
assert(out_path and n, "usage: gen_orders.lua OUT N")
local countries = { "fr", "de", "us", "gb", "jp", "br", "in", "es" }
local first = { "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances" }
local last = { "Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie",
               "Allen" }
local seed = 42
local function rnd(k)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return math.floor(seed / 65536) % k + 1
end
local format, concat = string.format, table.concat
local f = assert(io.open(out_path, "wb"))
f:write("id,customer,email,country,amount,day\n")
local buf, nb = {}, 0
for id = 1, n do
  local fi, la = first[rnd(#first)], last[rnd(#last)]
  local name = fi .. " " .. la
  if id % 97 == 0 then name = '"' .. la .. ", " .. fi .. ' ""the ' .. id .. 'th"""' end
  local email = (id % 3 == 0 and fi:upper() or fi:lower()) .. "." .. la:lower() .. id
                .. "@Example.COM"
  local amount = format("%.2f", (rnd(100000) - 2000) / 100)
  local day = format("2026-01-%02d", rnd(28))
  nb = nb + 1
  buf[nb] = concat({ id, name, email, countries[rnd(#countries)], amount, day }, ",")
  if nb == 10000 then
    f:write(concat(buf, "\n", 1, nb), "\n")
    nb = 0
  end
end
if nb > 0 then f:write(concat(buf, "\n", 1, nb), "\n") end
f:close()
