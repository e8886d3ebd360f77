-- Shared by the wrk scripts of scripts/benchmark (see Benchmarks/README.md).
--
-- Every script is started as `wrk ... -s SCRIPT URL -- key=value ...`. The arguments arrive in
-- init(args) of each thread; `threads=N` must match wrk's -t so that the per-thread slices of
-- the input files do not overlap. Each thread counts what its script cares about in the global
-- table `counters`; done() sums them over the threads and prints one line starting with
-- "WRK-RESULT " followed by a JSON object, which the driver reads.

local common = {}

local registered = {}

-- wrk calls request() of thread 0 once before the run, to check the request; nothing is sent.
-- Scripts that count what they send subtract it (`common.unsent_checks()` in init()).
function common.unsent_checks()
  if thread_index == 0 then return 1 end
  return 0
end

function common.setup(thread)
  thread:set("thread_index", #registered)
  table.insert(registered, thread)
end

function common.parse_args(args)
  local options = {}
  for _, argument in ipairs(args) do
    local key, value = argument:match("^([%w_]+)=(.*)$")
    if key then options[key] = value end
  end
  return options
end

-- Lines i, i + n, i + 2n, ... (0-based i) of a file: this thread's slice.
function common.slice(path, index, count)
  local lines = {}
  local number = 0
  for line in io.lines(path) do
    if number % count == index and line ~= "" then table.insert(lines, line) end
    number = number + 1
  end
  return lines
end

-- wrk's main thread sleeps for the whole -d duration even when every thread has stopped, so a
-- script that stops on its own also leaves a file `<finished>.<thread index>`; the driver waits
-- for all of them and then interrupts wrk (SIGINT), which still prints the results.
function common.finish(prefix)
  if prefix then
    local marker = io.open(prefix .. "." .. thread_index, "w")
    if marker then marker:close() end
  end
  wrk.thread:stop()
end

function common.split_tab(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do table.insert(fields, field) end
  return fields
end

function common.header(headers, name)
  local wanted = name:lower()
  for key, value in pairs(headers) do
    if key:lower() == wanted then return value end
  end
  return nil
end

function common.json_string(body, name)
  return body:match('"' .. name .. '"%s*:%s*"([^"]*)"')
end

local function encode(value)
  local kind = type(value)
  if kind == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return "null" end
    return string.format("%.17g", value)
  elseif kind == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  elseif kind == "boolean" then
    return tostring(value)
  elseif kind == "table" then
    local parts = {}
    for key, item in pairs(value) do table.insert(parts, encode(tostring(key)) .. ":" .. encode(item)) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

-- Prints the summary, latency percentiles (microseconds) and the summed thread counters.
function common.done(summary, latency, names)
  local counters = {}
  for _, name in ipairs(names or {}) do
    counters[name] = 0
    for _, thread in ipairs(registered) do
      counters[name] = counters[name] + (tonumber(thread:get(name)) or 0)
    end
  end
  local result = {
    duration_us = summary.duration,
    requests = summary.requests,
    bytes = summary.bytes,
    errors = {
      connect = summary.errors.connect, read = summary.errors.read, write = summary.errors.write,
      status = summary.errors.status, timeout = summary.errors.timeout,
    },
    latency_us = {
      p50 = latency:percentile(50), p90 = latency:percentile(90), p99 = latency:percentile(99),
      p999 = latency:percentile(99.9), max = latency.max, mean = latency.mean,
    },
    counters = counters,
  }
  io.write("WRK-RESULT " .. encode(result) .. "\n")
end

return common
