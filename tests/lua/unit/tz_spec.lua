-- weir.tz: zones read from the system's TZif files, checked against the
-- C library's reading of the same database (the `date` command), POSIX TZ
-- footers, local times in gaps and overlaps, and zone names confined to
-- the zoneinfo folder.
local tz = require("weir.tz")

-- "+0100CET" as `date` prints it for instant t in zone name.
local function date_says(name, t)
  local f = assert(io.popen("TZ=" .. name .. " date -d @" .. string.format("%d", t) .. " +%z%Z"))
  local s = f:read("*l")
  f:close()
  return s
end

local function mine(zone, t)
  local off, abbr = zone:offset_at(t)
  local a = math.abs(off)
  return string.format("%s%02d%02d%s", off < 0 and "-" or "+", math.floor(a / 3600),
                       math.floor(a % 3600 / 60), abbr)
end

local function utc(y, m, d, H, M, S)
  return tz.civil_seconds(y, m, d, H or 0, M or 0, S or 0)
end

describe("weir.tz", function()
  it("converts civil dates both ways", function()
    assert.equal(0, tz.days_from_civil(1970, 1, 1))
    assert.equal(11016, tz.days_from_civil(2000, 2, 29))
    assert.same({ 2000, 2, 29 }, { tz.civil_from_days(11016) })
    assert.same({ 1969, 12, 31 }, { tz.civil_from_days(-1) })
    for _, day in ipairs({ -800000, -1, 0, 59, 10957, 19782, 50000, 2932896 }) do
      local y, m, d = tz.civil_from_days(day)
      assert.equal(day, tz.days_from_civil(y, m, d))
    end
    assert.equal(29, tz.month_days(2024, 2))
    assert.equal(28, tz.month_days(1900, 2))
    assert.equal(29, tz.month_days(2000, 2))
  end)

  it("agrees with the date command on offsets and abbreviations", function()
    local instants = {
      0, 536457599, 1000000000, 1300000000,
      utc(2024, 3, 31, 0, 59, 59), utc(2024, 3, 31, 1), -- Berlin springs forward
      utc(2024, 10, 27, 0, 59, 59), utc(2024, 10, 27, 1), -- Berlin falls back
      utc(2024, 3, 10, 6, 59, 59), utc(2024, 3, 10, 7), -- New York springs forward
      utc(2024, 11, 3, 5, 59, 59), utc(2024, 11, 3, 6), -- New York falls back
      utc(2024, 4, 6, 15, 59, 59), utc(2024, 4, 6, 16), -- Sydney falls back
      utc(2024, 10, 5, 15, 59, 59), utc(2024, 10, 5, 16), -- Sydney springs forward
      -- past the last transition of the files: the POSIX footer rules
      utc(2040, 3, 25, 1), utc(2040, 7, 1), utc(2040, 12, 24, 12), utc(2099, 10, 25, 0, 59, 59),
      utc(2099, 10, 25, 1), 4102444800,
    }
    for _, name in ipairs({ "Europe/Berlin", "America/New_York", "Australia/Sydney",
                            "Asia/Tokyo", "Asia/Kolkata", "UTC" }) do
      local zone = assert(tz.load(name))
      for _, t in ipairs(instants) do
        assert.equal(date_says(name, t), mine(zone, t), name .. " at " .. t)
      end
    end
  end)

  it("tells whether daylight saving time is in force", function()
    local berlin = assert(tz.load("Europe/Berlin"))
    assert.same({ 3600, "CET", false }, { berlin:offset_at(utc(2024, 1, 15)) })
    assert.same({ 7200, "CEST", true }, { berlin:offset_at(utc(2024, 7, 15)) })
    local tokyo = assert(tz.load("Asia/Tokyo"))
    assert.same({ 32400, "JST", false }, { tokyo:offset_at(utc(2024, 7, 15)) })
  end)

  it("evaluates POSIX TZ strings, northern and southern", function()
    local p = assert(tz.parse_posix("CET-1CEST,M3.5.0,M10.5.0/3"))
    assert.same({ 3600, 7200 }, { p.std_off, p.dst_off })
    local z = setmetatable({ trans = {}, idx = {}, types = { { off = 0, abbr = "X" } }, posix = p },
                           tz.Zone)
    assert.equal(3600, (z:offset_at(utc(2030, 3, 31, 0, 59, 59))))
    assert.equal(7200, (z:offset_at(utc(2030, 3, 31, 1))))
    assert.equal(7200, (z:offset_at(utc(2030, 10, 27, 0, 59, 59))))
    assert.equal(3600, (z:offset_at(utc(2030, 10, 27, 1))))
    z.posix = assert(tz.parse_posix("AEST-10AEDT,M10.1.0,M4.1.0/3"))
    assert.same({ 39600, "AEDT", true }, { z:offset_at(utc(2030, 1, 1)) })
    assert.same({ 36000, "AEST", false }, { z:offset_at(utc(2030, 7, 1)) })
    z.posix = assert(tz.parse_posix("<+0330>-3:30"))
    assert.same({ 12600, "+0330", false }, { z:offset_at(utc(2030, 7, 1)) })
    z.posix = assert(tz.parse_posix("EST5EDT,J60/-1,300/26"))
    assert.equal(-14400, (z:offset_at(utc(2031, 3, 1, 4))))  -- J60 is 1 March
    assert.equal(-18000, (z:offset_at(utc(2031, 3, 1, 3, 59))))
    for _, bad in ipairs({ "", "C-1", "CET", "CET-1CEST,M3.5.0", "CET-1CEST,M13.5.0,M10.5.0",
                           "CET-1CEST,M3.5.0,M10.5.0/3x", "<CET-1" }) do
      local ok, err = tz.parse_posix(bad)
      assert.is_nil(ok)
      assert.matches("bad POSIX TZ string", err, 1, true)
    end
  end)

  it("maps local times to 0, 1 or 2 instants", function()
    local berlin = assert(tz.load("Europe/Berlin"))
    assert.same({}, berlin:local_to_utc(2024, 3, 31, 2, 30, 0))
    assert.same({ utc(2024, 3, 31, 0, 59) }, berlin:local_to_utc(2024, 3, 31, 1, 59, 0))
    assert.same({ utc(2024, 3, 31, 1) }, berlin:local_to_utc(2024, 3, 31, 3, 0, 0))
    assert.same({ utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 1, 30) },
                berlin:local_to_utc(2024, 10, 27, 2, 30, 0))
    local ny = assert(tz.load("America/New_York"))
    assert.same({}, ny:local_to_utc(2024, 3, 10, 2, 15, 0))
    assert.same({ utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30) },
                ny:local_to_utc(2024, 11, 3, 1, 30, 0))
    local tokyo = assert(tz.load("Asia/Tokyo"))
    assert.same({ utc(2024, 3, 31, 17, 30) }, tokyo:local_to_utc(2024, 4, 1, 2, 30, 0))
  end)

  it("gives the local date, time and weekday of an instant", function()
    local ny = assert(tz.load("America/New_York"))
    assert.same({ 2024, 2, 28, 19, 30, 5, 3 }, { tz.to_local(ny, utc(2024, 2, 29, 0, 30, 5)) })
    local sydney = assert(tz.load("Australia/Sydney"))
    assert.same({ 2025, 1, 1, 10, 0, 0, 3 }, { tz.to_local(sydney, utc(2024, 12, 31, 23)) })
  end)

  it("loads names under the zoneinfo folder only, and caches them", function()
    assert.equal(tz.load("Europe/Berlin"), tz.load("Europe/Berlin"))
    assert.equal(0, (assert(tz.load("UTC")):offset_at(1e9)))
    assert.is_truthy(tz.load("Etc/GMT+5"))
    assert.equal(-18000, (tz.load("Etc/GMT+5"):offset_at(0)))
    for _, bad in ipairs({ "Mars/Olympus", "../../../etc/passwd", "/etc/localtime",
                           "Europe/../Europe/Berlin", "./UTC", "zone1970.tab", "iso3166.tab",
                           "", "Europe/", "Europe//Berlin", "Europe" }) do
      local z, err = tz.load(bad)
      assert.is_nil(z, bad)
      assert.equal(string.format("unknown time zone %q", bad), err)
    end
  end)

  it("refuses a zone whose symlink leads out of the zoneinfo folder", function()
    local H = require("helpers")
    local root = H.tmpdir()
    local old = tz.root
    finally(function() tz.root = old; H.cleanup(root) end)
    os.execute("mkdir -p " .. root .. "/zi && ln -s /usr/share/zoneinfo/Asia/Tokyo "
               .. root .. "/zi/Out && cp /usr/share/zoneinfo/Asia/Tokyo " .. root .. "/zi/In")
    tz.root = root .. "/zi"
    assert.is_truthy(tz.load("In"))
    local z, err = tz.load("Out")
    assert.is_nil(z)
    assert.equal('unknown time zone "Out"', err)
  end)

  it("reads a version 1 file (32-bit times, no footer)", function()
    local f = assert(io.open("/usr/share/zoneinfo/Europe/Berlin", "rb"))
    local data = f:read("*a")
    f:close()
    local v1 = "TZif\0" .. data:sub(6)
    local z = assert(tz.parse_tzif(v1, "v1"))
    assert.is_nil(z.posix)
    assert.equal(7200, (z:offset_at(utc(2024, 7, 1))))
    assert.equal(3600, (z:offset_at(utc(2024, 12, 1))))
    assert.is_nil(tz.parse_tzif("TZif2" .. string.rep("\0", 20), "short"))
    assert.is_nil(tz.parse_tzif("not a zone", "x"))
  end)
end)
