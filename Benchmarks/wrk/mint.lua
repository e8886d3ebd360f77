-- Mints authorization codes ahead of a measured window: GET /authorize for each client of this
-- thread's slice, `per_client` times, and appends `CODE<TAB>CLIENT_ID` lines to
-- `out.<thread index>`. The clients file has one `CLIENT_ID` per line (thread i takes lines
-- i, i + threads, ...). `state` carries the client ID so that a redirect names its client. When
-- every code is back the thread stops; until then idle connections ask for /healthz/live.
--
--   wrk -t T -c C -d LIMIT -s mint.lua URL -- threads=T clients=PATH out=PREFIX per_client=32
--       redirect_uri=ENCODED scope=ENCODED finished=PREFIX

local common = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local clients
local per_client
local redirect_uri
local scope
local output
local finished
local next_client = 1
local issued_for_client = 0
local issued = 0
local answered = 0
local closed = false
minted = 0
refused = 0

function setup(thread) common.setup(thread) end

function init(args)
  local options = common.parse_args(args)
  clients = common.slice(options.clients, thread_index, tonumber(options.threads))
  per_client = tonumber(options.per_client or "32")
  redirect_uri = options.redirect_uri
  scope = options.scope or "openid"
  output = io.open(options.out .. "." .. thread_index, "w")
  finished = options.finished
  issued = -common.unsent_checks()
end

function request()
  if next_client <= #clients then
    local client = clients[next_client]
    issued_for_client = issued_for_client + 1
    if issued_for_client >= per_client then
      next_client = next_client + 1
      issued_for_client = 0
    end
    issued = issued + 1
    return wrk.format("GET", "/authorize?response_type=code&client_id=" .. client .. "&redirect_uri=" ..
      redirect_uri .. "&scope=" .. scope .. "&state=" .. client)
  end
  return wrk.format("GET", "/healthz/live")
end

local function finish_if_complete()
  if not closed and answered >= issued and next_client > #clients then
    closed = true
    output:close()
    common.finish(finished)
  end
end

function response(status, headers, body)
  if closed then return end
  if status == 200 then -- /healthz/live while the last codes come back
    finish_if_complete()
    return
  end
  answered = answered + 1
  local location = common.header(headers, "Location") or ""
  local code = location:match("[?&]code=([^&]+)")
  local state = location:match("[?&]state=([^&]+)")
  if status == 302 and code and state then
    output:write(code, "\t", state, "\n")
    minted = minted + 1
  else
    refused = refused + 1
  end
  finish_if_complete()
end

function done(summary, latency, requests)
  common.done(summary, latency, { "minted", "refused" })
end
