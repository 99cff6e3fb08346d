"""The fleet's atomic steps, as Lua scripts run by the Redis server on its own clock.

Every key of a desk carries the hash tag ``{desk}``, so a desk lives in one slot of a
Redis Cluster and each script touches only the keys it declares. Times are the server's
(``TIME``): hosts never compare their own clocks with each other.

Breaker hash ``bot4:{desk}:breaker:<name>``: ``state`` (a :class:`bot4.BreakerState`
value), ``gen`` (bumped by every transition), ``until`` (server ms: OPEN → half-open
at; HALF_OPEN → give up at), ``permits`` and ``successes`` (of the half-open episode).
Transitions are announced on ``bot4:{desk}:events`` as JSON objects: ``{"kind":
"breaker", "name", "state", "gen", "left" (ms), "reason"}`` and ``{"kind": "trading",
"state", "gen", "reason"}``. Desk hash ``bot4:{desk}:desk``: ``trading``, ``reason``,
``trading_gen``. Window hash ``bot4:{desk}:window:<name>``: per host
``<calls>,<failures>,<slow>,<server ms>``. Exposure hash ``bot4:{desk}:exposure``: per host ``g:<host>`` (its gross
exposure) and ``v:<host>`` (the ledger version it was read at).
"""

from __future__ import annotations

__all__ = ["CLAIM", "PERMIT", "READ", "SET_STATE", "SET_TRADING", "SUCCESS", "WINDOW"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ANNOUNCE = """
local function announce(channel, name, state, gen, left, reason)
  redis.call('PUBLISH', channel, cjson.encode({kind = 'breaker', name = name, state = state, gen = gen,
                                               left = left, reason = reason}))
end
local function reply(key, now)
  local s = redis.call('HMGET', key, 'state', 'gen', 'until')
  local left = 0
  if s[3] then left = math.max(0, tonumber(s[3]) - now) end
  return {tonumber(s[1] or 0), tonumber(s[2] or 0), left}
end
"""

READ = (
    _NOW
    + _ANNOUNCE
    + """
-- KEYS[1] breaker hash. Returns {exists, state, gen, ms left}.
local r = reply(KEYS[1], now)
return {redis.call('EXISTS', KEYS[1]), r[1], r[2], r[3]}
"""
)

SET_STATE = (
    _NOW
    + _ANNOUNCE
    + """
-- KEYS[1] breaker hash, KEYS[2] channel
-- ARGV: name, expected state (-1: any), new state, ms the new state lasts (0: no deadline), reason
-- A transition from the expected state (the one the caller left): applied, or refused
-- because another host moved first. Returns {applied, state, gen, ms left}.
local key, name = KEYS[1], ARGV[1]
local expected, new, span = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = tonumber(redis.call('HGET', key, 'state') or 0)
if expected >= 0 and state ~= expected then
  local r = reply(key, now)
  return {0, r[1], r[2], r[3]}
end
local gen = redis.call('HINCRBY', key, 'gen', 1)
redis.call('HSET', key, 'state', new, 'until', now + span, 'permits', 0, 'successes', 0)
announce(KEYS[2], name, new, gen, span, ARGV[5])
return {1, new, gen, span}
"""
)

PERMIT = (
    _NOW
    + _ANNOUNCE
    + """
-- KEYS[1] breaker hash, KEYS[2] channel; ARGV: name, half-open trial budget, half-open max ms
-- One trial permit of the fleet-wide half-open budget. An OPEN breaker whose period has
-- ended turns HALF_OPEN here (announced). Returns {granted, state, gen, ms left}.
local key, name = KEYS[1], ARGV[1]
local budget, span = tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', key, 'state', 'until', 'permits')
local state, deadline, permits = tonumber(s[1] or 0), tonumber(s[2] or 0), tonumber(s[3] or 0)
if state == 0 or state == 4 then
  local r = reply(key, now)
  return {1, r[1], r[2], r[3]}
end
if state == 1 and now >= deadline then
  local gen = redis.call('HINCRBY', key, 'gen', 1)
  redis.call('HSET', key, 'state', 2, 'until', now + span, 'permits', 0, 'successes', 0)
  announce(KEYS[2], name, 2, gen, span, 'open period elapsed')
  state, permits = 2, 0
end
if state == 2 and permits < budget then
  redis.call('HINCRBY', key, 'permits', 1)
  local r = reply(key, now)
  return {1, r[1], r[2], r[3]}
end
local r = reply(key, now)
return {0, r[1], r[2], r[3]}
"""
)

SUCCESS = (
    _NOW
    + _ANNOUNCE
    + """
-- KEYS[1] breaker hash, KEYS[2] channel; ARGV: name, trial successes that close it
-- A half-open trial succeeded somewhere in the fleet; enough of them close the breaker.
-- Returns {closed, state, gen, ms left}.
local key, name = KEYS[1], ARGV[1]
if tonumber(redis.call('HGET', key, 'state') or 0) ~= 2 then
  local r = reply(key, now)
  return {0, r[1], r[2], r[3]}
end
local done = redis.call('HINCRBY', key, 'successes', 1)
if done < tonumber(ARGV[2]) then
  local r = reply(key, now)
  return {0, r[1], r[2], r[3]}
end
local gen = redis.call('HINCRBY', key, 'gen', 1)
redis.call('HSET', key, 'state', 0, 'until', 0, 'permits', 0, 'successes', 0)
announce(KEYS[2], name, 0, gen, 0, done .. ' trial calls succeeded across the fleet')
return {1, 0, gen, 0}
"""
)

SET_TRADING = """
-- KEYS[1] desk hash, KEYS[2] channel; ARGV: trading state, reason
-- The desk's trading state (the kill switch), announced to every host.
local gen = redis.call('HINCRBY', KEYS[1], 'trading_gen', 1)
redis.call('HSET', KEYS[1], 'trading', ARGV[1], 'reason', ARGV[2])
redis.call('PUBLISH', KEYS[2], cjson.encode({kind = 'trading', state = tonumber(ARGV[1]), gen = gen, reason = ARGV[2]}))
return gen
"""

CLAIM = """
-- KEYS[1] exposure hash; ARGV: host, its gross exposure, its ledger version, limit in notional (-1: none),
-- checked (1/0)
-- A host's gross exposure (its whole ledger: positions and live reservations) as of ledger
-- version ARGV[3]; the fleet's is the sum over hosts. A claim older than the one held is
-- not applied (a newer one already counts it). A checked claim that would take the fleet
-- past the limit is refused. Returns {accepted, fleet gross}.
local key, host = KEYS[1], ARGV[1]
local gross, version, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local held = redis.call('HMGET', key, 'g:' .. host, 'v:' .. host)
local old, old_version = tonumber(held[1] or 0), tonumber(held[2] or -1)
local total = 0
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'g:' then total = total + tonumber(all[i + 1]) end
end
if version <= old_version then
  return {1, tostring(total)}
end
local new_total = total - old + gross
if ARGV[5] == '1' and limit >= 0 and gross > old and new_total > limit * (1 + 1e-9) + 1e-12 then
  return {0, tostring(total)}
end
redis.call('HSET', key, 'g:' .. host, ARGV[2], 'v:' .. host, version)
return {1, tostring(new_total)}
"""

WINDOW = (
    _NOW
    + _ANNOUNCE
    + """
-- KEYS[1] window hash, KEYS[2] breaker hash, KEYS[3] channel
-- ARGV: name, host, calls, failures, slow calls (this host's window now), window ms,
--       minimum calls, failure rate threshold, slow call rate threshold (-1: off), open ms
-- Hosts send their window counts once per bucket. The fleet's window is the sum of the
-- counts sent within the window; when it meets a rate threshold a CLOSED breaker opens
-- everywhere. Returns {tripped, fleet calls, fleet failures, fleet slow calls}.
local wkey, bkey, name = KEYS[1], KEYS[2], ARGV[1]
redis.call('HSET', wkey, ARGV[2], ARGV[3] .. ',' .. ARGV[4] .. ',' .. ARGV[5] .. ',' .. now)
local span = tonumber(ARGV[6])
redis.call('PEXPIRE', wkey, span * 2)
local calls, failures, slow = 0, 0, 0
local all = redis.call('HGETALL', wkey)
for i = 1, #all, 2 do
  local c, f, s, t = string.match(all[i + 1], '([^,]+),([^,]+),([^,]+),([^,]+)')
  if now - tonumber(t) <= span then
    calls, failures, slow = calls + tonumber(c), failures + tonumber(f), slow + tonumber(s)
  else
    redis.call('HDEL', wkey, all[i])
  end
end
local min_calls, rate, slow_rate = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local state = tonumber(redis.call('HGET', bkey, 'state') or 0)
if state ~= 0 or calls < min_calls or calls == 0 then
  return {0, calls, failures, slow}
end
local reason = nil
if failures / calls >= rate then
  reason = 'fleet failure rate ' .. failures .. '/' .. calls .. ' calls reached its threshold'
elseif slow_rate >= 0 and slow / calls >= slow_rate then
  reason = 'fleet slow call rate ' .. slow .. '/' .. calls .. ' calls reached its threshold'
end
if not reason then
  return {0, calls, failures, slow}
end
local gen = redis.call('HINCRBY', bkey, 'gen', 1)
local open_ms = tonumber(ARGV[10])
redis.call('HSET', bkey, 'state', 1, 'until', now + open_ms, 'permits', 0, 'successes', 0)
announce(KEYS[3], name, 1, gen, open_ms, reason)
return {1, calls, failures, slow}
"""
)
