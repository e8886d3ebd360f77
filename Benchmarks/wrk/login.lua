-- Sign-ins as a relying party does them, chained per thread: GET /authorize (the code from the
-- 302 Location), POST /token with that code (client_secret_basic), then, with `userinfo=1`,
-- GET /userinfo with the access token. wrk's callbacks do not say which connection a response
-- came on, so each thread keeps queues instead: a request takes the oldest access token waiting
-- for userinfo, else the oldest code waiting for redemption, else starts a new sign-in. Every
-- sign-in therefore completes its steps in order, and a thread never holds more unredeemed codes
-- than it has connections (tsidp allows 32 per user and client).
--
-- Thread i uses line i of the clients file (`CLIENT_ID<TAB>BASIC_AUTHORIZATION`). `limit` (per
-- thread, optional) stops the thread after that many completed sign-ins: the driver uses it to
-- create a given number of live logins.
--
--   wrk -t T -c C -d D -s login.lua URL -- threads=T clients=PATH redirect_uri=ENCODED
--       userinfo=1 [limit=N finished=PREFIX]

local common = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local client_id
local authorization
local redirect_uri
local with_userinfo
local limit
local finished
local codes = {}
local access_tokens = {}
local authorize_path
completed = 0
authorize_failed = 0
token_failed = 0
userinfo_failed = 0

function setup(thread) common.setup(thread) end

function init(args)
  local options = common.parse_args(args)
  local fields = common.split_tab(common.slice(options.clients, 0, 1)[thread_index + 1])
  client_id, authorization = fields[1], fields[2]
  redirect_uri = options.redirect_uri
  with_userinfo = options.userinfo == "1"
  limit = tonumber(options.limit or "0")
  finished = options.finished
  authorize_path = "/authorize?response_type=code&client_id=" .. client_id .. "&redirect_uri=" .. redirect_uri ..
    "&scope=openid%20email%20profile&state=s"
end

function request()
  if #access_tokens > 0 then
    local token = table.remove(access_tokens, 1)
    return wrk.format("GET", "/userinfo", { ["Authorization"] = "Bearer " .. token })
  end
  if #codes > 0 then
    local code = table.remove(codes, 1)
    return wrk.format("POST", "/token", {
      ["Authorization"] = authorization, ["Content-Type"] = "application/x-www-form-urlencoded",
    }, "grant_type=authorization_code&code=" .. code .. "&redirect_uri=" .. redirect_uri)
  end
  return wrk.format("GET", authorize_path)
end

local function count_completed()
  completed = completed + 1
  if limit > 0 and completed == limit then common.finish(finished) end
end

function response(status, headers, body)
  if status == 302 then
    local code = (common.header(headers, "Location") or ""):match("[?&]code=([^&]+)")
    if code then table.insert(codes, code) else authorize_failed = authorize_failed + 1 end
  elseif status == 200 and body:find('"access_token"', 1, true) then
    if with_userinfo then
      table.insert(access_tokens, common.json_string(body, "access_token"))
    else
      count_completed()
    end
  elseif status == 200 and body:find('"sub"', 1, true) then
    count_completed()
  elseif body:find('"error"', 1, true) then
    token_failed = token_failed + 1
  elseif status == 401 then
    userinfo_failed = userinfo_failed + 1
  else
    authorize_failed = authorize_failed + 1
  end
end

function done(summary, latency, requests)
  common.done(summary, latency, { "completed", "authorize_failed", "token_failed", "userinfo_failed" })
end
