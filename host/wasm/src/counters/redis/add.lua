-- counter-add: adds ARGV[1] to the fixed window of ARGV[2] milliseconds that contains now
-- on the server's clock (windows aligned to the Unix epoch), and returns the new total.
-- KEYS[1]: the counter's key without its window index, which is appended (see keys.rs).
-- The key expires when its window ends.
if redis.replicate_commands then redis.replicate_commands() end
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local index = math.floor(now / window)
local key = KEYS[1] .. ':' .. string.format('%d', index)
local total = redis.call('INCRBY', key, ARGV[1])
redis.call('PEXPIREAT', key, string.format('%d', (index + 1) * window))
return total
