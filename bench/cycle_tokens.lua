-- wrk script: every request carries another token, "<prefix><n>" for n in [first, first+count).
-- Used for the cache-miss and invalid-token scenarios.
local prefix, first, count = "", 0, 1
local n = 0

function init(args)
  prefix = args[1]
  first = tonumber(args[2])
  count = tonumber(args[3])
  n = math.random(0, count - 1)
end

function request()
  n = (n + 1) % count
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. prefix .. (first + n) })
end
