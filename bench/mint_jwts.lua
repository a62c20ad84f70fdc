-- wrk script: POST one form body (a token request) again and again and append each answer's
-- access_token to a file, one a line, until `limit` were written. args: body, file, limit.
local out = nil
local written = 0
local limit = 0

function init(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  out = assert(io.open(args[2], "a"))
  limit = tonumber(args[3])
end

function response(status, headers, body)
  local token = status == 200 and body:match('"access_token"%s*:%s*"([^"]+)"')
  if token then
    -- wrk ends a run without telling the script: every line must be on disk as it is written.
    out:write(token, "\n")
    out:flush()
    written = written + 1
  end
  if written >= limit then
    wrk.thread:stop()
  end
end
