"""The fleet's atomic steps, as Lua scripts run by the Redis server on its own clock.

Every key of a desk carries the hash tag ``{desk}``, so a desk lives in one slot of a
Redis Cluster and each script touches only the keys it declares. Times are the server's
(``TIME``): hosts never compare their own clocks with each other.

Breaker hash ``bot4:{desk}:breaker:<name>``: ``state`` (a :class:`bot4.BreakerState`
value), ``gen`` (bumped by every transition), ``until`` (server ms: OPEN → half-open
at; HALF_OPEN → give up at), ``permits`` and ``successes`` (of the half-open episode).
Transitions are announced on ``bot4:{desk}:events`` as JSON objects: ``{"kind":
"breaker", "name", "state", "gen", "left" (ms), "reason"}`` and ``{"kind": "trading",
"state", "gen", "reason"}`` and ``{"kind": "exposure", "host", "total"}``. Desk hash ``bot4:{desk}:desk``: ``trading``, ``reason``,
``trading_gen``. Window hash ``bot4:{desk}:window:<name>``: per host
``<calls>,<failures>,<slow>,<server ms>``. Exposure hash ``bot4:{desk}:exposure``: see
``_EXPOSURE`` (the epoch and membership protocol of docs/scaling.md).
"""

from __future__ import annotations

__all__ = [
    "CLAIM",
    "FORGET",
    "PERMIT",
    "READ",
    "REGISTER",
    "RENEW",
    "SET_STATE",
    "SET_TRADING",
    "SUCCESS",
    "SYNC",
    "WINDOW",
]

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

_EXPOSURE = """
-- The exposure hash: 'e' epoch (an integer, raised by every reset), 's' sequence (raised by
-- every write), and per host: 'g:<host>' |positions| x marks, 'v:<host>' the ledger version
-- they were read at, 'r:<host>:<id>' '<notional>,<version>' of each live reservation the
-- fleet approved, 'l:<host>' its lease (server ms), and after a reset, until it registers
-- again: 'x:<host>' its exposure as last known, 'w:<host>' claims wait for it until then.
local function tally(key)
  local hosts, total, leases = {}, 0, {}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    local kind, host, amount = string.sub(f, 1, 2), nil, nil
    if kind == 'g:' or kind == 'x:' then host, amount = string.sub(f, 3), tonumber(v)
    elseif kind == 'r:' then host, amount = string.match(f, '^r:(.*):[^:]*$'), tonumber(string.match(v, '^([^,]+)'))
    elseif kind == 'l:' then leases[string.sub(f, 3)] = tonumber(v)
    end
    if host then
      hosts[host] = (hosts[host] or 0) + amount
      total = total + amount
    end
  end
  return hosts, total, leases
end
local function raise_to(key, field, value)
  local old = tonumber(redis.call('HGET', key, field) or '-inf')
  if value > old then redis.call('HSET', key, field, tostring(value)) end
end
-- What the caller's epoch says of the hash: 'ok'; 'behind' (a reset happened that the caller
-- has not registered since); or a reset is due: 'lost' (the hash is gone: a Redis restarted
-- empty) or 'rolled back' (older than what the caller has seen: stale persistence, a
-- replica that lost the last writes).
local function epoch_status(key, epoch, seen)
  local e = redis.call('HGET', key, 'e')
  if not e then return 'lost' end
  e = tonumber(e)
  if epoch > e then return 'rolled back' end
  if epoch < e then return 'behind' end
  if tonumber(redis.call('HGET', key, 's') or 0) < seen then return 'rolled back' end
  return 'ok'
end
-- A new epoch: every host's exposure becomes provisional (the largest known figure) and
-- claims wait for each host with a live lease until it registers again.
local function reset(key, epoch, now, known)
  local hosts, _, leases = tally(key)
  redis.call('DEL', key)
  for host, amount in pairs(hosts) do redis.call('HSET', key, 'x:' .. host, tostring(amount)) end
  for host, lease in pairs(leases) do
    if lease > now then redis.call('HSET', key, 'w:' .. host, lease, 'l:' .. host, lease) end
  end
  for i = 1, #known, 3 do
    raise_to(key, 'x:' .. known[i], tonumber(known[i + 1]))
    if tonumber(known[i + 2]) > now then
      raise_to(key, 'w:' .. known[i], tonumber(known[i + 2]))
      raise_to(key, 'l:' .. known[i], tonumber(known[i + 2]))
    end
  end
  redis.call('HSET', key, 'e', epoch, 's', 0)
end
local function waiting_for(key, now)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'w:' and tonumber(all[i + 1]) > now then return string.sub(all[i], 3) end
  end
  return nil
end
"""

REGISTER = (
    _NOW
    + _EXPOSURE
    + """
-- KEYS[1] exposure hash. ARGV: host, epoch, seen, positions, version, lease ms,
--   n live, then n x (id, notional), then the members the host knows: (host, exposure, lease) ...
-- The host's whole exposure, replacing what the fleet held for it; starts a new epoch when
-- one is due. Returns {epoch, sequence, status}.
local key, host = KEYS[1], ARGV[1]
local epoch, seen, version = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local n = tonumber(ARGV[7])
local known = {}
for i = 8 + 2 * n, #ARGV do known[#known + 1] = ARGV[i] end
local status = epoch_status(key, epoch, seen)
if status == 'lost' or status == 'rolled back' then
  reset(key, math.max(epoch, tonumber(redis.call('HGET', key, 'e') or 0)) + 1, now, known)
elseif status == 'behind' or epoch == 0 then  -- what the caller knows of hosts not registered now
  for i = 1, #known, 3 do
    local other = known[i]
    if other ~= host and redis.call('HEXISTS', key, 'g:' .. other) == 0 then
      raise_to(key, 'x:' .. other, tonumber(known[i + 1]))
      if tonumber(known[i + 2]) > now then raise_to(key, 'w:' .. other, tonumber(known[i + 2])) end
    end
  end
end
local held = tonumber(redis.call('HGET', key, 'v:' .. host) or -1)
if version > held or redis.call('HEXISTS', key, 'g:' .. host) == 0 then
  redis.call('HSET', key, 'g:' .. host, ARGV[4], 'v:' .. host, version)
end
local live = {}
for i = 0, n - 1 do live[ARGV[8 + 2 * i]] = ARGV[9 + 2 * i] end
local prefix = 'r:' .. host .. ':'
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, #prefix) == prefix and string.find(f, ':', #prefix + 1, true) == nil then
    local id = string.sub(f, #prefix + 1)
    local at = tonumber(string.match(all[i + 1], ',(.*)$'))
    if live[id] == nil and at < version then redis.call('HDEL', key, f) end
  end
end
for id, notional in pairs(live) do redis.call('HSETNX', key, prefix .. id, notional .. ',' .. version) end
redis.call('HDEL', key, 'x:' .. host, 'w:' .. host)
redis.call('HSET', key, 'l:' .. host, now + tonumber(ARGV[6]))
local s = redis.call('HINCRBY', key, 's', 1)
return {tonumber(redis.call('HGET', key, 'e')), s, status}
"""
)

CLAIM = (
    _NOW
    + _EXPOSURE
    + """
-- KEYS[1] exposure hash, KEYS[2] channel. ARGV: host, epoch, seen, reservation id, notional, version,
-- limit (-1: none)
-- A reservation, approved when the fleet's exposure stays within the limit with it; the
-- host's new exposure is announced, so every host knows it as soon as the claimer does.
-- Returns {code, fleet exposure, sequence}: code 'ok', 'limit', 'wait' (a host has not
-- registered since a reset), or 'epoch' (the caller must register first).
local key, host = KEYS[1], ARGV[1]
local status = epoch_status(key, tonumber(ARGV[2]), tonumber(ARGV[3]))
if status ~= 'ok' or redis.call('HEXISTS', key, 'g:' .. host) == 0 then return {'epoch', '0', 0} end
if waiting_for(key, now) then return {'wait', '0', 0} end
local _, total = tally(key)
local notional, limit = tonumber(ARGV[5]), tonumber(ARGV[7])
if limit >= 0 and total + notional > limit * (1 + 1e-9) + 1e-12 then
  return {'limit', tostring(total), 0}
end
redis.call('HSET', key, 'r:' .. host .. ':' .. ARGV[4], ARGV[5] .. ',' .. ARGV[6])
local s = redis.call('HINCRBY', key, 's', 1)
local hosts = tally(key)
redis.call('PUBLISH', KEYS[2], cjson.encode({kind = 'exposure', host = host, total = hosts[host]}))
return {'ok', tostring(total + notional), s}
"""
)

SYNC = (
    _NOW
    + _EXPOSURE
    + """
-- KEYS[1] exposure hash. ARGV: host, epoch, seen, positions, version, then reservation ids that ended.
-- The host's positions (a newer ledger version replaces an older one) and its ended
-- reservations; never refused. Returns {code, sequence}: 'ok', or 'epoch' (register first).
local key, host = KEYS[1], ARGV[1]
local status = epoch_status(key, tonumber(ARGV[2]), tonumber(ARGV[3]))
if status ~= 'ok' or redis.call('HEXISTS', key, 'g:' .. host) == 0 then return {'epoch', 0} end
if tonumber(ARGV[5]) > tonumber(redis.call('HGET', key, 'v:' .. host) or -1) then
  redis.call('HSET', key, 'g:' .. host, ARGV[4], 'v:' .. host, ARGV[5])
end
for i = 6, #ARGV do redis.call('HDEL', key, 'r:' .. host .. ':' .. ARGV[i]) end
return {'ok', redis.call('HINCRBY', key, 's', 1)}
"""
)

RENEW = (
    _NOW
    + _EXPOSURE
    + """
-- KEYS[1] exposure hash. ARGV: host, epoch, seen, lease ms
-- The host's lease, and what it should know of the members. Returns {code, sequence,
-- then per member: host, exposure, lease}; code 'ok' or 'epoch' (register first).
local key, host = KEYS[1], ARGV[1]
local status = epoch_status(key, tonumber(ARGV[2]), tonumber(ARGV[3]))
if status ~= 'ok' or redis.call('HEXISTS', key, 'g:' .. host) == 0 then return {'epoch', 0} end
redis.call('HSET', key, 'l:' .. host, now + tonumber(ARGV[4]))
local hosts, _, leases = tally(key)
local out = {'ok', tonumber(redis.call('HGET', key, 's') or 0)}
for member, amount in pairs(hosts) do
  out[#out + 1] = member
  out[#out + 1] = tostring(amount)
  out[#out + 1] = leases[member] or 0
end
return out
"""
)

FORGET = """
-- KEYS[1] exposure hash; ARGV: host. An operator's word that a host is gone and flat: its
-- provisional exposure and the wait for it end. Returns whether it was waited for or counted.
return redis.call('HDEL', KEYS[1], 'x:' .. ARGV[1], 'w:' .. ARGV[1], 'l:' .. ARGV[1])
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
