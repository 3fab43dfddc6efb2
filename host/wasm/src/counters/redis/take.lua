-- rate-take: the GCRA token bucket of bucket.rs, the same arithmetic in the same order, on
-- the server's clock (microseconds).
-- KEYS[1]: the bucket, "<stamp micros> <debt>", absent when full; it expires when full.
-- ARGV: cost, limit, period millis (at least 1), burst, force ("1" or "0").
-- Returns {allowed (1 or 0), remaining, reset millis, retry-after millis}.
if redis.replicate_commands then redis.replicate_commands() end
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local force = ARGV[5] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local interval = period * 1000.0 / limit
local capacity = limit + burst
local slack = 1e-9 * capacity
local owed = 0
local stored = redis.call('GET', KEYS[1])
if stored then
  local stamp, debt = string.match(stored, '^(%d+) (%S+)$')
  stamp, debt = tonumber(stamp), tonumber(debt)
  if stamp and debt then
    -- A clock that went back is taken as standing still at the stamp.
    if now < stamp then now = stamp end
    owed = math.max(debt - (now - stamp) / interval, 0)
  end
end

local function millis_ceil(micros)
  return math.max(math.ceil((micros - 0.001) / 1000), 0)
end

local wanted = math.max(owed + cost, 0)
local allowed = force or cost < 0 or wanted <= capacity + slack
local after = owed
if allowed then after = wanted end
local remaining = math.floor(capacity - after + slack)
local reset = millis_ceil(after * interval)
local retry = 0
if not allowed then
  if cost > capacity then
    retry = math.max(reset, period)
  else
    retry = math.max(millis_ceil((owed + cost - capacity) * interval), 1)
  end
end

if allowed then
  if after > 0 then
    local bucket = string.format('%d %.17g', now, after)
    redis.call('SET', KEYS[1], bucket, 'PX', string.format('%d', reset + 1))
  else
    redis.call('DEL', KEYS[1])
  end
  return {1, remaining, reset, retry}
end
return {0, remaining, reset, retry}
