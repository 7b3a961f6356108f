-- wrk: GET a random product of the seeded range.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/inventory/p" .. math.random(0, tonumber(os.getenv("BENCH_PRODUCTS") or "1000") - 1))
end
