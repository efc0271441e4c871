-- wrk: POST /bookings, each request a free slot (the next hour each time, in
-- rooms of the thread's own), so every request does the full work of a
-- booking.  A thread takes turns over ROOMS_PER_THREAD rooms, so 2 threads
-- book 8 rooms, as pgbench's 8 clients do (one room each): the rooms then
-- hold as many bookings each in both runs, and the conflict checks cost the same.
local counter = 0
local room = 0
local nthreads = 2          -- adapter_http.sh runs wrk -t2
local threads = 0
local ROOMS_PER_THREAD = 4
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
  local r = room + nthreads * (counter % ROOMS_PER_THREAD)
  local body = string.format('{"room_id":%d,"starts_at":"%s","ends_at":"%s","title":"bench"}', r,
    os.date("!%Y-%m-%dT%H:%M:%SZ", 4102444800 + h * 3600), os.date("!%Y-%m-%dT%H:%M:%SZ", 4102444800 + h * 3600 + 3600))
  return wrk.format("POST", "/bookings", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")}, body)
end
