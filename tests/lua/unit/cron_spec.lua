-- weir.cron: the syntax (ranges, steps, lists, names, macros, the
-- day-of-month/day-of-week OR), next/prev across month ends and leap
-- years, and the daylight-saving rules in Europe/Berlin, America/New_York
-- and Australia/Sydney: a local time the clocks skip fires once at the
-- first instant after the jump, a local time that happens twice fires once,
-- at its first occurrence.
local cron = require("weir.cron")
local tz = require("weir.tz")

local function utc(y, m, d, H, M)
  return tz.civil_seconds(y, m, d, H or 0, M or 0, 0)
end

-- "YYYY-MM-DD HH:MM" of instant t in zone.
local function loc(zone, t)
  local y, m, d, H, M = tz.to_local(zone, t)
  return string.format("%04d-%02d-%02d %02d:%02d", y, m, d, H, M)
end

local function fires(expr, zone, from, n)
  local s = assert(cron.parse(expr))
  local out = {}
  for i, t in ipairs(s:next_n(from, zone, n)) do out[i] = loc(zone, t) end
  return out
end

local UTC = assert(tz.load("UTC"))

describe("weir.cron syntax", function()
  local function values(expr, field)
    local s = assert(cron.parse(expr))
    return select(2, s:values(field))
  end

  it("reads stars, lists, ranges and steps", function()
    assert.equal("0,15,30,45", values("*/15 * * * *", "minute"))
    assert.equal("1,6,11,16,21,26", values("1-30/5 * * * *", "minute"))
    assert.equal("5,20,35,50", values("5/15 * * * *", "minute"))
    assert.equal("1,2,3,10,20", values("1-3,10,20 * * * *", "minute"))
    assert.equal("0,6,12,18", values("0 */6 * * *", "hour"))
    assert.equal("9,10,11,12,13,14,15,16,17", values("0 9-17 * * *", "hour"))
    assert.equal("1,15", values("0 0 1,15 * *", "dom"))
    assert.equal(24, #(assert(cron.parse("* * * * *")):values("hour")))
  end)

  it("reads month and weekday names, 0 and 7 both Sunday", function()
    assert.equal("1,6,12", values("0 0 1 JAN,jun,Dec *", "month"))
    assert.equal("3,4,5,6,7,8,9", values("0 0 1 MAR-SEP *", "month"))
    assert.equal("1,2,3,4,5", values("0 0 * * MON-FRI", "dow"))
    assert.equal("0,6", values("0 0 * * SAT,SUN", "dow"))
    assert.equal("0", values("0 0 * * 7", "dow"))
    assert.equal("0,5,6", values("0 0 * * 5-7", "dow"))
    assert.equal("0,1,2,3,4,5,6", values("0 0 * * *", "dow"))
  end)

  it("expands the macros", function()
    local same = {
      ["@hourly"] = "0 * * * *", ["@daily"] = "0 0 * * *", ["@midnight"] = "0 0 * * *",
      ["@weekly"] = "0 0 * * 0", ["@monthly"] = "0 0 1 * *", ["@yearly"] = "0 0 1 1 *",
      ["@annually"] = "0 0 1 1 *",
    }
    local from = utc(2024, 2, 27, 13, 7)
    for macro, expr in pairs(same) do
      assert.same(fires(expr, UTC, from, 4), fires(macro, UTC, from, 4), macro)
    end
    assert.same({ "2024-03-03 00:00", "2024-03-10 00:00" }, fires("@weekly", UTC, from, 2))
    assert.same({ "2025-01-01 00:00" }, fires("@yearly", UTC, from, 1))
  end)

  it("names the field and the value in its errors", function()
    local cases = {
      ["60 * * * *"] = "minute: 60 is out of range 0-59",
      ["* 24 * * *"] = "hour: 24 is out of range 0-23",
      ["* * 0 * *"] = "day of month: 0 is out of range 1-31",
      ["* * * 13 *"] = "month: 13 is out of range 1-12",
      ["* * * * 8"] = "day of week: 8 is out of range 0-7",
      ["* * * FOO *"] = 'month: "FOO" is not a number or a name',
      ["* * * * MONDAY"] = 'day of week: "MONDAY" is not a number or a name',
      ["x * * * *"] = 'minute: "x" is not a number',
      ["*/0 * * * *"] = 'minute: bad step "0" in "*/0"',
      ["1-5/x * * * *"] = 'minute: bad step "x" in "1-5/x"',
      ["30-10 * * * *"] = 'minute: range "30-10" goes backwards',
      ["1,,2 * * * *"] = 'minute: empty list item in "1,,2"',
      ["* * * *"] = "expected 5 cron fields",
      ["* * * * * *"] = "got 6",
      ["@often"] = 'unknown cron macro "@often"',
      ["0 0 30 2 *"] = 'day of month: "30" never happens in month "2"',
      ["0 0 31 4,6,9,11 *"] = 'day of month: "31" never happens in month "4,6,9,11"',
    }
    for expr, want in pairs(cases) do
      local s, err = cron.parse(expr)
      assert.is_nil(s, expr)
      assert.matches(want, err, 1, true)
    end
    -- possible only on a weekday (OR) or in a leap year: accepted
    assert.is_truthy(cron.parse("0 0 30 2 MON"))
    assert.is_truthy(cron.parse("0 0 29 2 *"))
  end)
end)

describe("weir.cron next and prev", function()
  it("fires strictly after the given instant, at minute boundaries", function()
    local s = assert(cron.parse("*/15 * * * *"))
    assert.equal(utc(2024, 1, 1, 0, 15), s:next(utc(2024, 1, 1, 0, 0)))
    assert.equal(utc(2024, 1, 1, 0, 15), s:next(utc(2024, 1, 1, 0, 0) + 59.5))
    assert.equal(utc(2024, 1, 1, 0, 0), s:prev(utc(2024, 1, 1, 0, 0)))
    assert.equal(utc(2024, 1, 1, 0, 0), s:prev(utc(2024, 1, 1, 0, 14) + 59))
  end)

  it("crosses month and year ends, and finds 29 February", function()
    assert.same({ "2024-01-31 23:59", "2024-02-29 23:59", "2024-03-29 23:59", "2024-03-31 23:59" },
                fires("59 23 31,29 1-3 *", UTC, utc(2024, 1, 31, 12), 4))
    assert.same({ "2023-01-31 23:59", "2023-03-29 23:59", "2023-03-31 23:59" },
                fires("59 23 31,29 1-3 *", UTC, utc(2023, 1, 31, 12), 3))
    assert.same({ "2024-02-29 00:00", "2028-02-29 00:00", "2032-02-29 00:00" },
                fires("0 0 29 2 *", UTC, utc(2023, 3, 1), 3))
    -- 2100 is not a leap year: the 29 February after 2096 is in 2104
    local s = assert(cron.parse("0 0 29 2 *"))
    assert.equal("2104-02-29 00:00", loc(UTC, assert(s:next(utc(2096, 3, 1)))))
    assert.equal("2096-02-29 00:00", loc(UTC, assert(s:prev(utc(2104, 2, 28)))))
    assert.same({ "2024-12-31 23:30", "2025-01-01 00:00", "2025-01-01 00:30" },
                fires("0,30 * * * *", UTC, utc(2024, 12, 31, 23, 10), 3))
    assert.same({ "2024-01-31 00:00", "2024-03-31 00:00", "2024-05-31 00:00" },
                fires("0 0 31 * *", UTC, utc(2024, 1, 1), 3))
  end)

  it("ORs day of month and day of week when both are restricted, as Vixie cron", function()
    -- the 13th, or any Friday
    assert.same({ "2024-09-06 00:00", "2024-09-13 00:00", "2024-09-20 00:00",
                  "2024-09-27 00:00", "2024-10-04 00:00", "2024-10-11 00:00",
                  "2024-10-13 00:00" }, fires("0 0 13 * FRI", UTC, utc(2024, 9, 1), 7))
    assert.same({ "2024-09-09 00:00", "2024-09-16 00:00", "2024-09-23 00:00",
                  "2024-09-30 00:00", "2024-10-01 00:00" },
                fires("0 0 1-7 * MON", UTC, utc(2024, 9, 7, 12), 5))
    -- one of them a star: AND (the day of month alone, or the weekday alone)
    assert.same({ "2024-09-07 00:00", "2024-10-01 00:00" },
                fires("0 0 1-7 * *", UTC, utc(2024, 9, 6, 12), 2))
    assert.same({ "2024-09-02 00:00", "2024-09-09 00:00" },
                fires("0 0 * * MON", UTC, utc(2024, 9, 1), 2))
    -- "*/2" starts with a star: it does not restrict the day (Vixie)
    assert.same({ "2024-09-02 00:00", "2024-09-09 00:00" },
                fires("0 0 */1 * 1", UTC, utc(2024, 9, 1), 2))
  end)

  it("gives prev as the latest fire at or before", function()
    local s = assert(cron.parse("0 2 * * MON-FRI"))
    assert.equal(utc(2024, 9, 6, 2), s:prev(utc(2024, 9, 9, 1, 59)))  -- Monday 01:59 -> Friday
    assert.equal(utc(2024, 9, 9, 2), s:prev(utc(2024, 9, 9, 2)))
    for _, expr in ipairs({ "*/7 3-5 * * *", "0 0 1 * *", "15 14 13 * FRI", "@weekly" }) do
      local p = assert(cron.parse(expr))
      local t = utc(2024, 5, 17, 11, 3)
      for _ = 1, 20 do
        local nx = assert(p:next(t))
        assert.equal(nx, p:prev(nx), expr)
        assert.equal(p:prev(nx - 1), p:prev(t), expr)
        t = nx
      end
    end
  end)

  it("stops after a bounded search when nothing fires", function()
    local old = cron.SEARCH_YEARS
    finally(function() cron.SEARCH_YEARS = old end)
    local s = assert(cron.parse("0 0 29 2 *"))
    cron.SEARCH_YEARS = 3
    local t, err = s:next(utc(2097, 1, 1))  -- 2100 is not a leap year
    assert.is_nil(t)
    assert.equal('cron "0 0 29 2 *": no fire time within 3 years', err)
    t, err = s:prev(utc(2103, 1, 1))
    assert.is_nil(t)
    assert.matches("no fire time within 3 years", err, 1, true)
  end)

  it("skips by fields: a sparse schedule is found without a minute-by-minute walk", function()
    local s = assert(cron.parse("0 0 29 2 *"))
    local calls = 0
    local next_local = s.next_local
    s.next_local = function(self, ...)
      calls = calls + 1
      return next_local(self, ...)
    end
    assert.equal(utc(2028, 2, 29), s:next(utc(2024, 3, 1)))
    assert.equal(1, calls)
  end)
end)

describe("weir.cron in time zones", function()
  local berlin, ny, sydney, tokyo
  setup(function()
    berlin = assert(tz.load("Europe/Berlin"))
    ny = assert(tz.load("America/New_York"))
    sydney = assert(tz.load("Australia/Sydney"))
    tokyo = assert(tz.load("Asia/Tokyo"))
  end)

  it("evaluates in local time", function()
    assert.equal(utc(2024, 7, 1, 0), assert(cron.parse("0 2 * * *")):next(utc(2024, 6, 30, 12), berlin))
    assert.equal(utc(2024, 1, 1, 1), assert(cron.parse("0 2 * * *")):next(utc(2023, 12, 31, 12), berlin))
    assert.equal(utc(2024, 6, 30, 17), assert(cron.parse("0 2 * * *")):next(utc(2024, 6, 30, 12), tokyo))
    assert.equal(utc(2024, 7, 1), assert(cron.parse("0 0 * * *")):next(utc(2024, 6, 30, 12)))
  end)

  -- every fire of an hourly schedule over a day, as local and UTC text
  local function hourly(expr, zone, from, to)
    local s = assert(cron.parse(expr))
    local out, t = {}, from
    while true do
      t = assert(s:next(t, zone))
      if t >= to then break end
      out[#out + 1] = loc(zone, t) .. " = " .. loc(UTC, t) .. "Z"
    end
    return out
  end

  it("Europe/Berlin spring forward: 02:xx does not exist, fires once at 03:00", function()
    assert.same({
      "2024-03-31 00:30 = 2024-03-30 23:30Z",
      "2024-03-31 01:30 = 2024-03-31 00:30Z",
      "2024-03-31 03:00 = 2024-03-31 01:00Z", -- 02:30, in the gap
      "2024-03-31 03:30 = 2024-03-31 01:30Z",
      "2024-03-31 04:30 = 2024-03-31 02:30Z",
    }, hourly("30 * * * *", berlin, utc(2024, 3, 30, 23), utc(2024, 3, 31, 3)))
    assert.same({
      "2024-03-31 01:00 = 2024-03-31 00:00Z",
      "2024-03-31 03:00 = 2024-03-31 01:00Z", -- 02:00 and 03:00 are the same instant: once
      "2024-03-31 04:00 = 2024-03-31 02:00Z",
    }, hourly("0 * * * *", berlin, utc(2024, 3, 30, 23, 30), utc(2024, 3, 31, 2, 30)))
    assert.same({ "2024-03-31 03:00 = 2024-03-31 01:00Z", "2024-04-01 02:30 = 2024-04-01 00:30Z" },
                hourly("30 2 * * *", berlin, utc(2024, 3, 30, 12), utc(2024, 4, 1, 12)))
    assert.same({ "2024-03-31 03:00 = 2024-03-31 01:00Z", "2024-04-01 02:00 = 2024-04-01 00:00Z" },
                hourly("*/15 2 * * *", berlin, utc(2024, 3, 30, 12), utc(2024, 4, 1, 0, 10)))
  end)

  it("Europe/Berlin fall back: 02:xx happens twice, fires at the first", function()
    assert.same({
      "2024-10-27 01:30 = 2024-10-26 23:30Z",
      "2024-10-27 02:30 = 2024-10-27 00:30Z", -- CEST; the CET 02:30 does not fire
      "2024-10-27 03:30 = 2024-10-27 02:30Z",
      "2024-10-27 04:30 = 2024-10-27 03:30Z",
    }, hourly("30 * * * *", berlin, utc(2024, 10, 26, 23), utc(2024, 10, 27, 4)))
    assert.same({ "2024-10-27 02:30 = 2024-10-27 00:30Z", "2024-10-28 02:30 = 2024-10-28 01:30Z" },
                hourly("30 2 * * *", berlin, utc(2024, 10, 26, 12), utc(2024, 10, 28, 12)))
    -- asked from inside the second 02:xx hour: the first 02:30 is past
    local s = assert(cron.parse("30 2 * * *"))
    assert.equal(utc(2024, 10, 28, 1, 30), s:next(utc(2024, 10, 27, 1, 10), berlin))
    assert.equal(utc(2024, 10, 27, 0, 30), s:prev(utc(2024, 10, 27, 1, 45), berlin))
    local q = assert(cron.parse("45 2 * * *"))
    assert.equal(utc(2024, 10, 27, 0, 45), q:prev(utc(2024, 10, 27, 1, 30), berlin))
  end)

  it("America/New_York both transitions", function()
    assert.same({
      "2024-03-10 01:30 = 2024-03-10 06:30Z",
      "2024-03-10 03:00 = 2024-03-10 07:00Z", -- 02:30 EST does not exist
      "2024-03-10 03:30 = 2024-03-10 07:30Z",
    }, hourly("30 * * * *", ny, utc(2024, 3, 10, 6), utc(2024, 3, 10, 8)))
    assert.same({
      "2024-11-03 00:30 = 2024-11-03 04:30Z",
      "2024-11-03 01:30 = 2024-11-03 05:30Z", -- EDT; 01:30 EST (06:30Z) does not fire
      "2024-11-03 02:30 = 2024-11-03 07:30Z",
    }, hourly("30 * * * *", ny, utc(2024, 11, 3, 4), utc(2024, 11, 3, 8)))
  end)

  it("Australia/Sydney (southern): October forward, April back", function()
    assert.same({
      "2024-10-06 01:30 = 2024-10-05 15:30Z",
      "2024-10-06 03:00 = 2024-10-05 16:00Z",
      "2024-10-06 03:30 = 2024-10-05 16:30Z",
    }, hourly("30 * * * *", sydney, utc(2024, 10, 5, 15), utc(2024, 10, 5, 17)))
    assert.same({
      "2024-04-07 01:30 = 2024-04-06 14:30Z",
      "2024-04-07 02:30 = 2024-04-06 15:30Z", -- AEDT; the AEST 02:30 does not fire
      "2024-04-07 03:30 = 2024-04-06 17:30Z",
    }, hourly("30 * * * *", sydney, utc(2024, 4, 6, 14), utc(2024, 4, 6, 18)))
  end)

  it("fires every hour once across a whole year of transitions", function()
    -- each local hour of the 365 days fires once: the hour that happens
    -- twice only on its first pass, the skipped one at the jump (03:00);
    -- "0 * * * *" finds its skipped 02:00 at the very instant of 03:00, so
    -- in a zone with DST the two are one fire
    for _, case in ipairs({ { "30 * * * *", 0 }, { "0 * * * *", 1 } }) do
      for _, zone in ipairs({ berlin, ny, sydney, tokyo, UTC }) do
        local s = assert(cron.parse(case[1]))
        local from, to = utc(2030, 1, 1), utc(2031, 1, 1)
        local n, seen, t = 0, {}, from - 1
        while true do
          t = assert(s:next(t, zone))
          if t >= to then break end
          assert.is_nil(seen[t])
          seen[t] = true
          n = n + 1
        end
        local _, _, dst_jan = zone:offset_at(from)
        local _, _, dst_jul = zone:offset_at(utc(2030, 7, 1))
        local expect = 365 * 24 - ((dst_jan or dst_jul) and case[2] or 0)
        assert.equal(expect, n, case[1] .. " " .. zone.name)
      end
    end
  end)

  it("prev mirrors next across the transitions", function()
    for _, zone in ipairs({ berlin, ny, sydney }) do
      for _, expr in ipairs({ "30 * * * *", "0 * * * *", "*/20 1-3 * * *", "30 2 * * *" }) do
        local s = assert(cron.parse(expr))
        local t, last = utc(2024, 3, 1), nil
        for _ = 1, 200 do
          local nx = assert(s:next(t, zone))
          assert.equal(nx, s:prev(nx, zone), expr .. " " .. zone.name)
          if last then assert.equal(last, s:prev(nx - 1, zone), expr .. " " .. zone.name) end
          last = nx
          t = nx
        end
      end
    end
  end)
end)
