-- wrk script of bench/events.sh: session.status events as fast as the
-- gateway takes them. The sessions listed in $EVENTS_IDS_FILE (linked and
-- connected) are shared out among wrk's threads ($EVENTS_THREADS, = wrk -t);
-- each thread takes its sessions in turn, a round of disconnects (one event
-- each) then a round of connects (connecting, connected: two events each).
-- Needs more sessions per thread than connections per thread, so that one
-- session never has two calls in flight.
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

function init(args)
  local nthreads = tonumber(os.getenv("EVENTS_THREADS"))
  mine = {}
  local i = 0
  for line in io.lines(os.getenv("EVENTS_IDS_FILE")) do
    if line ~= "" then
      if i % nthreads == tid then table.insert(mine, line) end
      i = i + 1
    end
  end
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("EVENTS_KEY")
  n = 0
end

function request()
  local sid = mine[(n % #mine) + 1]
  local action = (math.floor(n / #mine) % 2 == 0) and "disconnect" or "connect"
  n = n + 1
  return wrk.format("POST", "/api/v1/sessions/" .. sid .. "/" .. action, nil, "")
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.3f %d %d %.0f %.0f\n",
    summary.requests, summary.duration / 1e6, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
