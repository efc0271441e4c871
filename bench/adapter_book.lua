-- wrk: POST /bookings, each request a free slot (one room per thread, the
-- next hour each time), so every request does the full work of a booking.
local counter = 0
local room = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("room", threads)
end
function init(args)
  room = tonumber(wrk.thread:get("room")) or 1
end
local round = tonumber(os.getenv("BENCH_ROUND") or "0")
function request()
  counter = counter + 1
  local h = counter + round * 100000   -- each round in hours of its own
  -- 2100-01-01T00:00Z plus h hours
  local body = string.format('{"room_id":%d,"starts_at":"%s","ends_at":"%s","title":"bench"}', room,
    os.date("!%Y-%m-%dT%H:%M:%SZ", 4102444800 + h * 3600), os.date("!%Y-%m-%dT%H:%M:%SZ", 4102444800 + h * 3600 + 3600))
  return wrk.format("POST", "/bookings", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")}, body)
end
