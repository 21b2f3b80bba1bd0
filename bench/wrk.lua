-- wrk script of the benchmark: unique requests from a file, optional constant-rate pacing,
-- and a JSON summary on stdout.
--
-- wrk -t T -c C -d D -s bench/wrk.lua URL -- <requests file|-> <once|cycle> <rate/s, 0 = none> <T>
--
-- The requests file has one request a line, tab-separated:
--   METHOD  PATH  HEADERS  BODY
-- HEADERS is `name: value` pairs joined by `|`; BODY is sent as is (no tabs or newlines in it).
-- Thread n of T takes lines n, n+T, n+2T, ...: every request of a `once` run is sent at most
-- once, and a thread that has used up its lines stops (the run is bounded in requests as
-- well as time). `-` as the file sends `GET /` (the ceiling).
--
-- Pacing (rate > 0): each thread keeps an absolute schedule of send slots at rate/T per
-- second; whichever of its connections is free takes the next slot (wrk's delay hook).
-- Latency is measured by wrk from the actual send; with many mostly idle connections a slow
-- answer delays only its own connection, so the schedule holds (not wrk2's full
-- coordinated-omission correction: say so when quoting).

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local index = 0
local mode = "cycle"
local interval = 0
local next_slot = nil
-- Read back by done() through thread:get.
sent = 0
answered = 0
first_ms = 0
last_ms = 0
statuses = ""
local status_counts = {}

-- Fields of one line split on tabs (empty fields kept).
local function split_tabs(line)
  local out, start = {}, 1
  while true do
    local at = string.find(line, "\t", start, true)
    if not at then
      out[#out + 1] = string.sub(line, start)
      return out
    end
    out[#out + 1] = string.sub(line, start, at - 1)
    start = at + 1
  end
end

-- args: requests file, mode, total rate per second, number of threads.
function init(args)
  local path = args[1]
  mode = args[2] or "cycle"
  local rate = tonumber(args[3] or "0")
  local nthreads = tonumber(args[4] or "1")
  if rate > 0 then interval = 1000 * nthreads / rate end
  if path == nil or path == "-" then
    requests[1] = wrk.format("GET", "/")
    return
  end
  local n = 0
  for line in io.lines(path) do
    if n % nthreads == tid then
      local f = split_tabs(line)
      local headers = {}
      for pair in string.gmatch(f[3] or "", "[^|]+") do
        local name, value = string.match(pair, "^([^:]+):%s*(.*)$")
        if name then headers[name] = value end
      end
      local body = f[4]
      if body == "" then body = nil end
      requests[#requests + 1] = wrk.format(f[1], f[2], headers, body)
    end
    n = n + 1
  end
end

function request()
  index = index + 1
  if index > #requests then
    if mode == "once" or #requests == 0 then
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
    end
    index = 1
  end
  if sent == 0 then first_ms = now_ms() end
  sent = sent + 1
  return requests[index]
end

function delay()
  if interval <= 0 then return 0 end
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  next_slot = next_slot + interval
  local wait = next_slot - now
  if wait < 0 then return 0 end
  return math.floor(wait)
end

function response(status, headers, body)
  answered = answered + 1
  last_ms = now_ms()
  local key = tostring(status)
  status_counts[key] = (status_counts[key] or 0) + 1
  local parts = {}
  for k, v in pairs(status_counts) do parts[#parts + 1] = k .. "=" .. v end
  statuses = table.concat(parts, ",")
end

function done(summary, latency, requests_stats)
  local total_sent, total_answered, first, last = 0, 0, nil, 0
  local merged = {}
  for _, t in ipairs(threads) do
    total_sent = total_sent + (t:get("sent") or 0)
    total_answered = total_answered + (t:get("answered") or 0)
    local f, l = t:get("first_ms") or 0, t:get("last_ms") or 0
    if f > 0 and (first == nil or f < first) then first = f end
    if l > last then last = l end
    for k, v in string.gmatch(t:get("statuses") or "", "(%d+)=(%d+)") do
      merged[k] = (merged[k] or 0) + tonumber(v)
    end
  end
  local status_parts = {}
  for k, v in pairs(merged) do status_parts[#status_parts + 1] = string.format('"%s":%d', k, v) end
  local out = string.format(
    '{"sent":%d,"answered":%d,"span_ms":%.3f,"wrk_requests":%d,"wrk_duration_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},"statuses":{%s}}',
    total_sent, total_answered, (first and (last - first) or 0), summary.requests, summary.duration,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, table.concat(status_parts, ","))
  io.write("BENCH_JSON " .. out .. "\n")
end
