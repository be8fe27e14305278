-- wrk script: GET /{code} with codes drawn under a Zipf popularity, the same
-- question as `loadgen --mode get`, asked by an independent load generator.
--   wrk -t2 -c64 -d10s --latency -s benches/zipf.lua http://HOST:PORT -- CODES_FILE [S]
local codes, cdf = {}, {}

function init(args)
  local path, s = args[1], tonumber(args[2] or "1.0")
  for line in io.lines(path) do
    if line ~= "" then codes[#codes + 1] = line end
  end
  local total = 0
  for k = 1, #codes do
    total = total + 1 / (k ^ s)
    cdf[k] = total
  end
  for k = 1, #codes do cdf[k] = cdf[k] / total end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  -- The first rank whose cumulative share reaches a uniform draw.
  local u, lo, hi = math.random(), 1, #codes
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/" .. codes[lo])
end
