-- wrk script: every request carries another token, "<prefix><n>" for n in [first, first+count).
-- Used for the cache-miss and invalid-token scenarios. args: prefix, first, count and, optionally,
-- where in the range to start (the runner continues each Envoy's cycle where its last run ended,
-- so a token comes back only after the whole range went by: long evicted from the filter's cache).
local prefix, first, count = "", 0, 1
local n = 0

function init(args)
  prefix = args[1]
  first = tonumber(args[2])
  count = tonumber(args[3])
  if args[4] then
    n = tonumber(args[4]) % count
  else
    n = math.random(0, count - 1)
  end
end

function request()
  local token = prefix .. (first + n)
  n = (n + 1) % count
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. token })
end
