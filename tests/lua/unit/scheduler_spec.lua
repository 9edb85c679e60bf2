-- weir.scheduler with a virtual clock: which logical times fire, after an
-- outage (catch-up none / latest / all, max_catchup), across daylight
-- saving, never before the schedule existed. The store's side (each
-- logical time fired once) is in tests/e2e/schedule_spec.lua.
local scheduler = require("weir.scheduler")

local H, M = 3600000, 60000
-- 2026-01-05 00:00:00 UTC in ms
local T0 = 1767571200000

local function sched(cron, zone, catchup, max)
  return { cron = cron, timezone = zone or "UTC", catchup = catchup or "latest",
           max_catchup = max or 100, jitter = 0 }
end

describe("weir.scheduler.plan", function()
  it("fires a due time once it is reached, and says when the next one is", function()
    local s = sched("0 * * * *")
    local fires, skip, nxt = scheduler.plan(s, { since = T0 }, T0 + H + 2000)
    assert.same({ T0 + H }, fires)
    assert.equal(T0 + H, skip)
    assert.equal(T0 + 2 * H, nxt)
    -- after it fired (last_fire), nothing until the next
    fires = scheduler.plan(s, { since = T0, last_fire = T0 + H }, T0 + H + 30 * M)
    assert.same({}, fires)
  end)

  it("catches up after an outage: all (in order), latest, or none", function()
    local state = { since = T0, last_fire = T0 }
    local now = T0 + 5 * H + 10 * M
    local all = scheduler.plan(sched("0 * * * *", "UTC", "all"), state, now)
    assert.same({ T0 + H, T0 + 2 * H, T0 + 3 * H, T0 + 4 * H, T0 + 5 * H }, all)
    local latest, skip = scheduler.plan(sched("0 * * * *", "UTC", "latest"), state, now)
    assert.same({ T0 + 5 * H }, latest)
    assert.equal(T0 + 5 * H, skip)
    local none, skip2 = scheduler.plan(sched("0 * * * *", "UTC", "none"), state, now)
    assert.same({}, none)
    assert.equal(T0 + 5 * H, skip2) -- the missed ones are passed over for good
    -- none still fires what is on time
    none = scheduler.plan(sched("0 * * * *", "UTC", "none"), state, T0 + 5 * H + 20000)
    assert.same({ T0 + 5 * H }, none)
  end)

  it("fires at most max_catchup of the missed ones: the latest", function()
    local fires = scheduler.plan(sched("*/10 * * * *", "UTC", "all", 3),
                                 { since = T0, last_fire = T0 }, T0 + 2 * H)
    assert.same({ T0 + 100 * M, T0 + 110 * M, T0 + 120 * M }, fires)
  end)

  it("delays each fire by its own jitter: the same on every server, spread across pipelines", function()
    local s = sched("0 * * * *")
    s.jitter = 600 -- 10 minutes
    local d = scheduler.delay(s, "orders", T0 + H)
    assert.equal(d, scheduler.delay(s, "orders", T0 + H)) -- deterministic
    assert.truthy(d >= 0 and d < 600000)
    local spread = {}
    for i = 1, 20 do spread[scheduler.delay(s, "p" .. i, T0 + H)] = true end
    local distinct = 0
    for _ in pairs(spread) do distinct = distinct + 1 end
    assert.truthy(distinct > 10, "20 pipelines share " .. distinct .. " delays")
    -- not before lt + delay; at it, the logical time is still lt
    local fires, _, again = scheduler.plan(s, { since = T0 }, T0 + H + d - 1, "orders")
    assert.same({}, fires)
    assert.equal(T0 + H + d, again)
    fires = scheduler.plan(s, { since = T0 }, T0 + H + d, "orders")
    assert.same({ T0 + H }, fires)
    -- catch-up all fires in order, stopping at the first not yet due
    s.catchup = "all"
    local now = T0 + 3 * H + scheduler.delay(s, "orders", T0 + 3 * H) - 1
    fires = scheduler.plan(s, { since = T0 }, now, "orders")
    assert.same({ T0 + H, T0 + 2 * H }, fires)
    -- no jitter: no delay
    assert.equal(0, scheduler.delay(sched("0 * * * *"), "orders", T0 + H))
  end)

  it("never fires for times before the schedule existed", function()
    local fires = scheduler.plan(sched("0 * * * *", "UTC", "all"), { since = T0 + 3 * H + 1 },
                                 T0 + 3 * H + 30 * M)
    assert.same({}, fires)
  end)

  it("fires a local time that does not exist once, at the first valid instant after it", function()
    -- Europe/Berlin springs forward on 2026-03-29 at 02:00 (to 03:00):
    -- 02:30 local does not exist; it fires at 03:00 CEST = 01:00 UTC
    local s = sched("30 2 * * *", "Europe/Berlin", "all")
    local day = 1774742400000 -- 2026-03-29 00:00 UTC
    local fires = scheduler.plan(s, { since = day }, day + 6 * H)
    assert.same({ day + H }, fires)
  end)

  it("fires a local time that occurs twice once, at its first occurrence", function()
    -- Europe/Berlin falls back on 2026-10-25 at 03:00 (to 02:00): 02:30
    -- happens at 00:30 UTC (CEST) and 01:30 UTC (CET); only the first fires
    local s = sched("30 2 * * *", "Europe/Berlin", "all")
    local day = 1792886400000 -- 2026-10-25 00:00 UTC
    local fires = scheduler.plan(s, { since = day }, day + 6 * H)
    assert.same({ day + 30 * M }, fires)
    -- America/New_York, the same rule on its own dates (2026-11-01, 02:00
    -- back to 01:00): 01:30 EDT = 05:30 UTC fires, 01:30 EST does not
    local ny = sched("30 1 * * *", "America/New_York", "all")
    local nday = 1793491200000 -- 2026-11-01 00:00 UTC
    fires = scheduler.plan(ny, { since = nday }, nday + 12 * H)
    assert.same({ nday + 5 * H + 30 * M }, fires)
  end)

  it("lists the logical times of a range for a backfill, both ends included", function()
    local lts = scheduler.between(sched("0 * * * *"), T0, T0 + 3 * H, 100)
    assert.same({ T0, T0 + H, T0 + 2 * H, T0 + 3 * H }, lts)
    local none, err = scheduler.between(sched("* * * * *"), T0, T0 + 24 * H, 1000)
    assert.is_nil(none)
    assert.matches("more than 1000", err)
    assert.equal(T0, scheduler.parse_time("2026-01-05"))
    assert.equal(T0 + H + 30 * M, scheduler.parse_time("2026-01-05T01:30:00Z"))
    assert.equal(T0 + H + 30 * M, scheduler.parse_time("2026-01-05T01:30Z"))
    assert.is_nil(scheduler.parse_time("2026-02-30"))
    assert.is_nil(scheduler.parse_time("2026-01-05T01:30:00+02:00"))
    -- RFC 3339 as weir writes it (the API's times), milliseconds kept
    assert.equal(T0 + H + 250, scheduler.parse_time("2026-01-05T01:00:00.250Z"))
    assert.equal(T0 + H, scheduler.parse_time(require("weir.util").rfc3339(T0 + H)))
    assert.is_nil(scheduler.parse_time("2026-01-05T01:00:00.Z"))
    assert.is_nil(scheduler.parse_time("2026-01-05T01:00.5Z"))
  end)

  it("lists the next fires in the zone and in UTC", function()
    local up = scheduler.upcoming(sched("0 9 * * MON", "Asia/Tokyo"), T0 - 1000, 2)
    assert.equal(2, #up)
    assert.equal("2026-01-05 09:00:00 JST", up[1]["local"])
    assert.equal(T0, up[1].utc) -- 09:00 JST is 00:00 UTC
    assert.equal("2026-01-12 09:00:00 JST", up[2]["local"])
    assert.equal("2026-01-05T00:00:00Z", scheduler.iso(T0))
  end)
end)
