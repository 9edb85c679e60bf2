-- Regenerates data/orders.csv (deterministic): luajit make_data.lua
-- 5,000 orders with a few rows a real export would have: quoted names with
-- commas and quotes, mixed-case emails, and three rows whose amount is not
-- a number (they go to the dead-letter file).
local countries = { "fr", "de", "us", "gb", "jp", "br", "in", "es" }
local first = { "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances" }
local last = { "Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie",
               "Allen" }
local seed = 42
local function rnd(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return math.floor(seed / 65536) % n + 1
end
local out = { "id,customer,email,country,amount,day" }
for id = 1, 5000 do
  local f, l = first[rnd(#first)], last[rnd(#last)]
  local name = f .. " " .. l
  if id % 97 == 0 then name = '"' .. l .. ', ' .. f .. ' ""the ' .. id .. 'th"""' end
  local email = (id % 3 == 0 and f:upper() or f:lower()) .. "." .. l:lower() .. id .. "@Example.COM"
  local amount = string.format("%.2f", (rnd(100000) - 2000) / 100)
  if id == 777 or id == 2222 or id == 4321 then amount = "n/a" end
  local day = string.format("2026-01-%02d", rnd(28))
  out[#out + 1] = table.concat({ id, name, email, countries[rnd(#countries)], amount, day }, ",")
end
local f = assert(io.open("data/orders.csv", "wb"))
f:write(table.concat(out, "\n"), "\n")
f:close()
