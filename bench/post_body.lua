-- wrk script: POST a fixed body (args[1], form-encoded) to the URL.
function init(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
