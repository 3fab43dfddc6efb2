-- counter-get: the total of the fixed window of ARGV[1] milliseconds that contains now on
-- the server's clock, or nil when nothing was added. KEYS[1] as for add.lua.
local window = tonumber(ARGV[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local index = math.floor(now / window)
return redis.call('GET', KEYS[1] .. ':' .. string.format('%d', index))
