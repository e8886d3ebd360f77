-- Refresh-token rotation, chained: the input file has one `REFRESH_TOKEN` per line, the
-- client's Basic authorization is an argument. Thread i takes lines i, i + threads, ... into a
-- queue; a request takes the oldest token and the response's new refresh token goes to the back.
-- Since rotation makes every refresh token single-use, each token is in at most one request at a
-- time; the driver gives every thread one token more than it has connections (wrk calls
-- request() once before the run to check it, which uses up one token of thread 0).
--
--   wrk -t T -c C -d D -s refresh.lua URL -- threads=T file=PATH authorization=BASIC

local common = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local queue
local authorization
rotated = 0
failed = 0
starved = 0

function setup(thread) common.setup(thread) end

function init(args)
  local options = common.parse_args(args)
  queue = common.slice(options.file, thread_index, tonumber(options.threads))
  authorization = options.authorization
end

function request()
  local token = table.remove(queue, 1)
  if not token then
    starved = starved + 1
    return wrk.format("GET", "/healthz/live")
  end
  return wrk.format("POST", "/token", {
    ["Authorization"] = authorization, ["Content-Type"] = "application/x-www-form-urlencoded",
  }, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = status == 200 and common.json_string(body, "refresh_token")
  if token then
    table.insert(queue, token)
    rotated = rotated + 1
  elseif not (status == 200 and body:sub(1, 2) == "ok") then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  common.done(summary, latency, { "rotated", "failed", "starved" })
end
