-- bench/publish.lua — owns the wrk side of the durable-publish benchmark (bench/run.sh):
-- every request POSTs /v1/events with one ~400-byte file.uploaded event, or a JSON array of
-- BENCH_BATCH of them, and done() reports what the server answered.
--
-- Why this shape: the body is built once and set on wrk.* (no request() hook), so wrk sends a
-- pre-built request and stays cheap on the two cores it shares with Sluice and PostgreSQL.
-- response() only counts status codes; done() prints one machine-readable line,
--   BENCH requests=N created=N non2xx=N ... p50_us=N p99_us=N duration_us=N
-- which bench/run.sh parses. No event carries an `id`: the server makes a ULID for each, so
-- every request stores new events.
--
-- Environment: BENCH_TOKEN (bearer token), BENCH_BATCH (1 = single event, default 1),
-- BENCH_DATA (the `data` object as JSON; a default is built in).

local token = os.getenv("BENCH_TOKEN") or ""
local batch = tonumber(os.getenv("BENCH_BATCH") or "1") or 1
local data = os.getenv("BENCH_DATA")
if data == nil or data == "" then
  data = '{"file_id":"f_wrk","user_id":"user_01HZX3K7Q9M2V8R4T6Y1B5N0CW",'
    .. '"contextual_core_id":"core_01HZX3K7QA7F2D9G4J8L1P6S3E",'
    .. '"filename":"uploads/2024/q3/quarterly-business-review-2024-q3-final-version-with-'
    .. 'appendix-and-speaker-notes-for-the-board-meeting-in-october-approved-by-finance-and-'
    .. 'legal-v12.pdf","file_size":48213377,"mime_type":"application/pdf",'
    .. '"is_browser_viewable":true}'
end

local envelope = '{"type":"file.uploaded","data":' .. data .. '}'
local body
if batch <= 1 then
  body = envelope
else
  local parts = {}
  for i = 1, batch do parts[i] = envelope end
  body = "[" .. table.concat(parts, ",") .. "]"
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"

-- Per-thread counters; setup() keeps each thread so done() can add them up.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  created, other2xx, c4xx, c5xx, cother = 0, 0, 0, 0, 0
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  elseif status >= 200 and status < 300 then
    other2xx = other2xx + 1
  elseif status >= 400 and status < 500 then
    c4xx = c4xx + 1
  elseif status >= 500 then
    c5xx = c5xx + 1
  else
    cother = cother + 1
  end
end

function done(summary, latency, requests)
  local t201, t2xx, t4, t5, tot = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    t201 = t201 + t:get("created")
    t2xx = t2xx + t:get("other2xx")
    t4 = t4 + t:get("c4xx")
    t5 = t5 + t:get("c5xx")
    tot = tot + t:get("cother")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d created=%d other2xx=%d non2xx=%d c4xx=%d c5xx=%d " ..
    "sock_errors=%d timeouts=%d p50_us=%d p99_us=%d mean_us=%.0f max_us=%d " ..
    "duration_us=%d batch=%d body_bytes=%d\n",
    summary.requests, t201, t2xx, t4 + t5 + tot, t4, t5,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    summary.duration, batch, #body))
end
