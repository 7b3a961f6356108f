-- wrk: POST /api/inventory/check with 100 random ids of the seeded range, as the cart sends it
-- (BENCH_TOKEN: a bearer token with ROLE_SYSTEM).
local products = tonumber(os.getenv("BENCH_PRODUCTS") or "10000")
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or ""),
}
math.randomseed(os.time())
request = function()
  local ids = {}
  for i = 1, 100 do
    ids[i] = '"p' .. math.random(0, products - 1) .. '"'
  end
  return wrk.format("POST", "/api/inventory/check", headers, "[" .. table.concat(ids, ",") .. "]")
end
