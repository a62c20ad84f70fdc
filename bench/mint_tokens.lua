-- wrk script: create tokens "<prefix><n>" through the admin API, n counting up per thread.
-- args: prefix, credential id, service id, per-thread stride and, optionally, how many tokens a
-- thread creates before it stops (so the token-service's in-memory index holds every one).
local counter = 0
local limit = nil
local thread_index = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  prefix, credential, service, stride = args[1], args[2], args[3], tonumber(args[4])
  if args[5] then
    limit = id * stride + tonumber(args[5])
  end
  counter = id * stride
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body = string.format(
    '{"credential":{"id":"%s"},"service":{"id":"%s"},"expires_in":3600,"access_token":"%s%d"}',
    credential, service, prefix, counter)
  counter = counter + 1
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if limit and counter >= limit then
    wrk.thread:stop()
  end
end
