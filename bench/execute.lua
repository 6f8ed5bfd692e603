-- wrk script: POST the reference workflow's execute with a question the simulated student knows.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SGDE_BENCH_TOKEN")
wrk.body = '{"inputs":{"question":"A shop sells 41 apples per day for 8 days at $2642444 each. How many dollars does the shop make?"}}'

-- With SGDE_BENCH_ROUTING=1 every request carries its own routing key.
local routing = os.getenv("SGDE_BENCH_ROUTING") == "1"
local counter = 0
function request()
  if routing then
    counter = counter + 1
    wrk.headers["X-Sgde-Routing-Key"] = "customer-" .. counter
  end
  return wrk.format()
end

local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("throughput: %.1f runs/s\n", summary.requests / (summary.duration / 1e6)))
  for _, p in ipairs({50, 90, 95, 99}) do
    io.write(string.format("p%d: %.2f ms\n", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("errors: connect %d, read %d, write %d, status %d, timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end
