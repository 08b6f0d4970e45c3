-- bench/validation_attack/health.lua — the wrk side of bench/validation_attack/run.sh: GET
-- /health on a fresh connection each time (`Connection: close`, as a load balancer's or an
-- orchestrator's probe connects), and done() prints one machine-readable line,
--   BENCH requests=N non200=N errors=N p50_us=N p99_us=N max_us=N duration_us=N
-- which run.sh parses. Why a new connection per probe: a kept-alive connection stays on the
-- one HTTP thread that accepted it; a new one is accepted by whichever thread is free first,
-- so the probe waits only when every HTTP thread is busy — the case the benchmark is about.

wrk.method = "GET"
wrk.path = "/health"
wrk.headers["Connection"] = "close"

-- Per-thread counters (each wrk thread has its own Lua state); done() adds them up.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("non200") end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d non200=%d errors=%d p50_us=%d p99_us=%d max_us=%d duration_us=%d\n",
    summary.requests, bad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, summary.duration))
end
