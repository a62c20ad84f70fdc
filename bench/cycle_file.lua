-- wrk script: every request carries the next token of a file (one a line), cycling.
-- Used for the JWT scenarios where each request brings another JWT. args: the file and,
-- optionally, where in it to start (the runner continues each Envoy's cycle where its last run
-- ended, so a token comes back only after the whole file went by).
local tokens = {}
local n = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      table.insert(tokens, line)
    end
  end
  if #tokens == 0 then
    error("no tokens in " .. args[1])
  end
  n = tonumber(args[2] or "0") % #tokens
end

function request()
  n = n % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[n] })
end
