-- random-key.lua: a wrk script that asks for random keys from a list, `GET /cache/{key}`.
--
--   wrk -t1 -c32 -d10s -s bench/random-key.lua http://127.0.0.1:19001 -- KEYFILE
--
-- KEYFILE holds one key per line. `bench/hits.sh` writes two of them: keys that the
-- frontend under test owns (every answer a main-cache hit) and keys another frontend owns
-- that it put in its hot cache. nginx gets the same script and the same paths, so both
-- servers see requests of the same shape.
--
-- At the end, `done` prints one line of JSON, so no one has to parse wrk's human-readable
-- units ("1.23ms", "45.6k"):
--
--   RESULT {"requests":1065234,"seconds":10.00,"rps":106489.1,"p50_us":198,"p99_us":2960,"max_us":15012,"errors":0}
--
-- wrk runs a separate Lua state per thread: `setup` runs in the main state once per thread,
-- `init` and `request` in each thread's own state, `done` in the main state at the end.

local threads_started = 0

-- Main state, once per thread: give each thread a number, so their random keys differ.
function setup(thread)
  threads_started = threads_started + 1
  thread:set("thread_number", threads_started)
end

local requests = {}

-- Thread state: read the keys and format every request once, up front. Building the
-- request text inside `request()` would cost wrk CPU on every call, and wrk shares this
-- machine's cores with the server it measures.
function init(args)
  local file = args[1]
  if not file then
    error("usage: wrk ... -s random-key.lua URL -- KEYFILE")
  end
  for key in io.lines(file) do
    if key ~= "" then
      requests[#requests + 1] = wrk.format("GET", "/cache/" .. key)
    end
  end
  if #requests == 0 then
    error("no keys in " .. file)
  end
  -- Without a per-thread seed every thread would walk the same "random" sequence.
  math.randomseed(os.time() * 1000 + thread_number)
end

-- Thread state, once per request.
function request()
  return requests[math.random(#requests)]
end

-- Main state, at the end. Latencies are in microseconds.
function done(summary, latency, _)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%.2f,"rps":%.1f,"p50_us":%d,"p99_us":%d,"max_us":%d,"errors":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99), latency.max,
    -- status: answers that were not 2xx/3xx, e.g. a 404 because a key was missing.
    e.connect + e.read + e.write + e.status + e.timeout))
end
