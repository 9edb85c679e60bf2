-- Regenerates data/orders.csv (deterministic): luajit make_data.lua
-- Or any size elsewhere: luajit make_data.lua OUT N (the benchmarks do).
-- N orders (5,000 by default) with a few rows a real export would have:
-- quoted names with commas and quotes, mixed-case emails, and three rows
-- whose amount is not a number (they go to the dead-letter file).
local out_path, n = arg[1] or "data/orders.csv", tonumber(arg[2] or "5000")
local countries = { "fr", "de", "us", "gb", "jp", "br", "in", "es" }
local first = { "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances" }
local last = { "Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie",
               "Allen" }
local seed = 42
local function rnd(k)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return math.floor(seed / 65536) % k + 1
end
local f = assert(io.open(out_path, "wb"))
f:write("id,customer,email,country,amount,day\n")
local buf = {}
for id = 1, n do
  local fi, la = first[rnd(#first)], last[rnd(#last)]
  local name = fi .. " " .. la
  if id % 97 == 0 then name = '"' .. la .. ', ' .. fi .. ' ""the ' .. id .. 'th"""' end
  local email = (id % 3 == 0 and fi:upper() or fi:lower()) .. "." .. la:lower() .. id
                .. "@Example.COM"
  local amount = string.format("%.2f", (rnd(100000) - 2000) / 100)
  if id == 777 or id == 2222 or id == 4321 then amount = "n/a" end
  local day = string.format("2026-01-%02d", rnd(28))
  buf[#buf + 1] = table.concat({ id, name, email, countries[rnd(#countries)], amount, day }, ",")
  if #buf == 10000 or id == n then
    f:write(table.concat(buf, "\n"), "\n")
    buf = {}
  end
end
f:close()
