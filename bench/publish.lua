-- bench/publish.lua — owns the wrk side of the durable-publish benchmark (bench/run.sh): every
-- request POSTs /v1/events with one ~570-byte event, or a JSON array of BENCH_BATCH of them,
-- to Sluice or to the Node baseline (bench/peer-node: same envelope, same answer codes), and
-- done() reports what the server answered.
--
-- The envelope is what a careful producer sends, not the bare minimum:
--   {"id":"<unique>","type":"file.uploaded","correlation_id":"corr-<request id>",
--    "user_id":"user_01HZX…","metadata":{"trace_id":"<request id>","client":"…","region":"…"},
--    "data":{…}}
-- Every event carries its own client `id` (API.md: ^[A-Za-z0-9._:-]{1,64}$, the idempotency
-- key), unique per request across wrk's threads and connections and across runs:
--   <BENCH_RUN>-<thread>-<request number of that thread>[.<index in the batch>]
-- (connections of one thread share its Lua state, so the thread's counter covers them). The
-- events of one batch share one correlation_id and trace_id, as one producer operation would.
--
-- Why this shape: the body is cut once into constant pieces around the ids; request() only
-- joins the pieces with the new ids (table.concat) and hands wrk the result, so wrk stays as
-- cheap as it can on the two cores it shares with the servers. response() only counts status
-- codes; done() prints one machine-readable line,
--   BENCH requests=N created=N non2xx=N ... p50_us=N p99_us=N duration_us=N
-- which bench/run.sh parses.
--
-- Environment: BENCH_TOKEN (bearer token; the Node baseline ignores it), BENCH_BATCH (1 = single
-- event, default 1), BENCH_RUN (the run's tag, [A-Za-z0-9]{1,24}; default from the clock and
-- /dev/urandom), BENCH_TYPE (default file.uploaded), BENCH_DATA (the `data` object as JSON;
-- a default for file.uploaded is built in).

local token = os.getenv("BENCH_TOKEN") or ""
local batch = tonumber(os.getenv("BENCH_BATCH") or "1") or 1
if batch < 1 then batch = 1 end
local etype = os.getenv("BENCH_TYPE") or "file.uploaded"
local data = os.getenv("BENCH_DATA")
if data == nil or data == "" then
  data = '{"file_id":"f_wrk","user_id":"user_01HZX3K7Q9M2V8R4T6Y1B5N0CW",'
    .. '"contextual_core_id":"core_01HZX3K7QA7F2D9G4J8L1P6S3E",'
    .. '"filename":"uploads/2024/q3/quarterly-business-review-2024-q3-final-version-with-'
    .. 'appendix-and-speaker-notes-for-the-board-meeting-in-october-approved-by-finance-and-'
    .. 'legal-v12.pdf","file_size":48213377,"mime_type":"application/pdf",'
    .. '"is_browser_viewable":true}'
end

local run = os.getenv("BENCH_RUN")
if run == nil or not run:match("^[A-Za-z0-9]+$") or #run > 24 then
  local seed = ""
  local f = io.open("/dev/urandom", "rb")
  if f then
    seed = f:read(4) or ""
    f:close()
  end
  run = string.format("r%x", os.time())
  for i = 1, #seed do run = run .. string.format("%02x", seed:byte(i)) end
end

-- One event = P1 <id> P2 <request id> P3 <request id> P4; a request joins them.
local P1 = '{"id":"'
local P2 = '","type":"' .. etype .. '","correlation_id":"corr-'
local P3 = '","user_id":"user_01HZX3K7Q9M2V8R4T6Y1B5N0CW",'
  .. '"metadata":{"client":"bench/publish.lua","region":"eu-west-1","trace_id":"'
local P4 = '"},"data":' .. data .. '}'

wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"

-- Per-thread counters; setup() numbers each thread and keeps it so done() can add them up.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local parts = {}
local prefix
function init(args)
  created, other2xx, c4xx, c5xx, cother, body_bytes = 0, 0, 0, 0, 0, 0
  seq = 0
  prefix = run .. "-" .. tostring(tid or 0) .. "-"
  -- The constant pieces, in place once; request() only overwrites the ids.
  local n = 0
  if batch > 1 then
    n = n + 1
    parts[n] = "["
  end
  for i = 1, batch do
    if i > 1 then
      n = n + 1
      parts[n] = ","
    end
    parts[n + 1] = P1
    parts[n + 2] = "" -- the event id
    parts[n + 3] = P2
    parts[n + 4] = "" -- the request id (correlation_id)
    parts[n + 5] = P3
    parts[n + 6] = "" -- the request id (trace_id)
    parts[n + 7] = P4
    n = n + 7
  end
  if batch > 1 then
    n = n + 1
    parts[n] = "]"
  end
end

function request()
  seq = seq + 1
  local rid = prefix .. seq
  local k = (batch > 1) and 1 or 0 -- skips "["
  for i = 1, batch do
    if i > 1 then k = k + 1 end -- skips ","
    parts[k + 2] = (batch > 1) and (rid .. "." .. i) or rid
    parts[k + 4] = rid
    parts[k + 6] = rid
    k = k + 7
  end
  local body = table.concat(parts)
  body_bytes = #body
  return wrk.format(nil, nil, nil, body)
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
  local t201, t2xx, t4, t5, tot, bytes = 0, 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    t201 = t201 + t:get("created")
    t2xx = t2xx + t:get("other2xx")
    t4 = t4 + t:get("c4xx")
    t5 = t5 + t:get("c5xx")
    tot = tot + t:get("cother")
    bytes = math.max(bytes, t:get("body_bytes") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d created=%d other2xx=%d non2xx=%d c4xx=%d c5xx=%d " ..
    "sock_errors=%d timeouts=%d p50_us=%d p99_us=%d mean_us=%.0f max_us=%d " ..
    "duration_us=%d batch=%d body_bytes=%d run=%s\n",
    summary.requests, t201, t2xx, t4 + t5 + tot, t4, t5,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    summary.duration, batch, bytes, run))
end
