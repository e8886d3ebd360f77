-- One fixed POST, sent again and again (introspection): `body` is the form body, already
-- percent-encoded, `authorization` the Authorization header.
--
--   wrk -t T -c C -d D -s post.lua URL/PATH -- threads=T body=... authorization=...

local common = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

function setup(thread) common.setup(thread) end

function init(args)
  local options = common.parse_args(args)
  wrk.method = "POST"
  wrk.body = options.body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  if options.authorization then wrk.headers["Authorization"] = options.authorization end
end

function done(summary, latency, requests)
  common.done(summary, latency, {})
end
