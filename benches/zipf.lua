-- wrk script: GET /{code} with codes drawn under a Zipf popularity, the same
-- question as `loadgen --mode get`, asked by an independent load generator,
-- with the same visitors: one of AGENTS (1000) browser-like User-Agents,
-- Zipf-popular, and most requests with a Referer from a short list.
--   wrk -t2 -c64 -d10s --latency -s benches/zipf.lua http://HOST:PORT -- CODES_FILE [S] [AGENTS] [TEMPLATES]
-- TEMPLATES (default benches/agents.txt) holds the user-agent templates that
-- src/bin/loadgen.rs includes; both expand them the same way.
local codes, cdf, agents, agent_cdf = {}, {}, {}, {}

local referrers = {
  false, false, "https://www.google.com/", "https://t.co/", "https://news.ycombinator.com/",
  "https://www.linkedin.com/", "https://www.reddit.com/r/rust/", "android-app://com.slack/",
}

-- Cumulative Zipf shares of n ranks with exponent s.
local function zipf_cdf(n, s)
  local out, total = {}, 0
  for k = 1, n do
    total = total + 1 / (k ^ s)
    out[k] = total
  end
  for k = 1, n do out[k] = out[k] / total end
  return out
end

-- The first rank whose cumulative share reaches a uniform draw.
local function draw(shares)
  local u, lo, hi = math.random(), 1, #shares
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if shares[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

function init(args)
  local path, s, n = args[1], tonumber(args[2] or "1.0"), tonumber(args[3] or "1000")
  for line in io.lines(path) do
    if line ~= "" then codes[#codes + 1] = line end
  end
  cdf = zipf_cdf(#codes, s)
  local templates = {}
  for line in io.lines(args[4] or "benches/agents.txt") do
    if line ~= "" then templates[#templates + 1] = line end
  end
  local t = #templates
  for i = 0, n - 1 do
    local v, m, b = 100 + math.floor(i / t) % 32, math.floor(i / t) % 10, (i * 7919) % 6000
    local ua = templates[i % t + 1]:gsub("{v}", tostring(v)):gsub("{m}", tostring(m)):gsub("{b}", tostring(b))
    agents[#agents + 1] = ua
  end
  agent_cdf = zipf_cdf(#agents, 1.0)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  local headers = {}
  if #agents > 0 then
    headers["User-Agent"] = agents[draw(agent_cdf)]
    local referrer = referrers[math.random(#referrers)]
    if referrer then headers["Referer"] = referrer end
  end
  return wrk.format("GET", "/" .. codes[draw(cdf)], headers)
end
