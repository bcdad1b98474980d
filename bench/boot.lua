-- wrk script: a cloud-init boot mix over many instances (bench/run.py writes the arguments).
--
--   wrk -t1 -c50 -d20s -s bench/boot.lua http://HOST:PORT -- FILE
--
-- FILE has one line per request of one pass over every instance's boot, precomputed by run.py:
--   PATH<TAB>CLOSE<TAB>HEADER: value<TAB>HEADER: value...
-- CLOSE is 1 on the last request of an instance's boot: that request says "Connection: close",
-- so the next boot starts on a new connection (a new guest, which the SNAT rules of shapes 4 and
-- 5 give a new source address). Each wrk thread starts at its own offset in the pass and cycles.
-- At the end one line "MDSVC-BENCH {json}" gives requests, non-2xx answers, socket errors and
-- latency percentiles (microseconds) for run.py to read.

local requests = {}
local index = 0
non2xx = 0  -- global: done() reads it from every thread
local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local file = args[1]
   for line in io.lines(file) do
      local fields = {}
      for field in string.gmatch(line, "[^\t]+") do
         table.insert(fields, field)
      end
      local path, close = fields[1], fields[2]
      local headers = {}
      for i = 3, #fields do
         local name, value = string.match(fields[i], "^([^:]+): (.*)$")
         headers[name] = value
      end
      if close == "1" then
         headers["Connection"] = "close"
      end
      table.insert(requests, wrk.format("GET", path, headers))
   end
   -- threads start spread over the pass
   index = math.floor(#requests * id / math.max(1, tonumber(args[2] or "1")))
end

function request()
   index = index + 1
   if index > #requests then
      index = 1
   end
   return requests[index]
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("non2xx")
   end
   local e = summary.errors
   io.write(string.format(
      'MDSVC-BENCH {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "p50": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}\n',
      summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
