-- A plain GET of the URL, for the baselines and the static documents; only adds the JSON result.
--
--   wrk -t T -c C -d D -s get.lua URL -- threads=T

local common = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

function setup(thread) common.setup(thread) end

function done(summary, latency, requests)
  common.done(summary, latency, {})
end
