-- No ARGV. Returns {high, normal, low, delayed, in_flight, dead}.
reap(now_ms())
return {
  redis.call('LLEN', LANE.high),
  redis.call('LLEN', LANE.normal),
  redis.call('LLEN', LANE.low),
  redis.call('ZCARD', K_DELAYED),
  redis.call('ZCARD', K_INFLIGHT),
  redis.call('LLEN', K_DEAD),
}
