-- ARGV: prefix. Returns {high, normal, low, delayed, in_flight, dead}.
reap(now_ms())
return {
  redis.call('LLEN', queue_key('high')),
  redis.call('LLEN', queue_key('normal')),
  redis.call('LLEN', queue_key('low')),
  redis.call('ZCARD', K_DELAYED),
  redis.call('ZCARD', K_INFLIGHT),
  redis.call('LLEN', K_DEAD),
}
