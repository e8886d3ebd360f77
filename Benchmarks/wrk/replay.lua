-- Sends prepared single-use requests, each at most once: one line of the input file per request,
-- `PATH<TAB>AUTHORIZATION<TAB>BODY` (a POST with a form body; AUTHORIZATION may be empty).
-- Thread i takes lines i, i + threads, ...; a thread that runs out stops and counts it in
-- `exhausted`, so a window that ran short of prepared requests is visible in the result.
--
--   wrk -t T -c C -d D -s replay.lua URL -- threads=T file=PATH

local common = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local lines
local position = 0
exhausted = 0
sent = 0
rejected = 0

function setup(thread) common.setup(thread) end

function init(args)
  local options = common.parse_args(args)
  lines = common.slice(options.file, thread_index, tonumber(options.threads))
  sent = -common.unsent_checks()
end

local function build(line)
  local fields = common.split_tab(line)
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  if fields[2] ~= "" then headers["Authorization"] = fields[2] end
  return wrk.format("POST", fields[1], headers, fields[3])
end

function request()
  position = position + 1
  if position > #lines then
    if exhausted == 0 then exhausted = 1; wrk.thread:stop() end
    return wrk.format("GET", "/healthz/live")
  end
  sent = sent + 1
  return build(lines[position])
end

function response(status, headers, body)
  if status ~= 200 then rejected = rejected + 1 end
end

function done(summary, latency, requests)
  common.done(summary, latency, { "exhausted", "sent", "rejected" })
end
