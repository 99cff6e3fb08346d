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

from bot4.risk.limits import EPSILON as LIMIT_EPSILON
from bot4.risk.limits import TOLERANCE as LIMIT_TOLERANCE

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

_NOW = f"""
local LIMIT_TOLERANCE, LIMIT_EPSILON = {LIMIT_TOLERANCE!r}, {LIMIT_EPSILON!r}
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
-- every write), 'c' the server ms until which a new epoch approves nothing (its grace: the
-- time any live host needs to register again). Per host: 'g:<host>' its positions (and the
-- reservations the fleet has not approved yet) at their prices, 'v:<host>' the ledger
-- version they were read at, 'i:<host>' its segment's incarnation, 'o:<host>' the newest
-- ledger version it wrote, 'r:<host>:<id>' '<notional>,<version>' of each live reservation
-- the fleet approved, 'l:<host>' its lease (server ms); after a reset, until it registers
-- again: 'x:<host>' its exposure as last known, 'w:<host>' claims wait for it until then.
-- Every script takes ARGV host, epoch, seen sequence, incarnation, newest version written
-- first; the host's own fields are the ones with its name.
local function host_of(f)
  local kind = string.sub(f, 1, 2)
  if kind == 'r:' then return 'r', string.match(f, '^r:(.*):[^:]*$') end
  return string.sub(f, 1, 1), string.sub(f, 3)
end
-- One pass: per-host exposure, the fleet's, the leases, and a host waited for (if any).
local function tally(key, now)
  local hosts, total, leases, waiting = {}, 0, {}, nil
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    local kind, host = host_of(f)
    local amount = nil
    if kind == 'g' or kind == 'x' then amount = tonumber(v)
    elseif kind == 'r' then amount = tonumber(string.match(v, '^([^,]+)'))
    elseif kind == 'l' then leases[host] = tonumber(v)
    elseif kind == 'w' and tonumber(v) > now then waiting = host
    end
    if amount then
      hosts[host] = (hosts[host] or 0) + amount
      total = total + amount
    end
  end
  return hosts, total, leases, waiting
end
local function raise_to(key, field, value)
  local old = tonumber(redis.call('HGET', key, field) or '-inf')
  if value > old then redis.call('HSET', key, field, tostring(value)) end
end
-- Every field of one host (its registration, reservations, lease, provisional figures).
local function drop_host(key, host, keep_wait)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local kind, owner = host_of(all[i])
    if owner == host and not (keep_wait and (kind == 'x' or kind == 'w' or kind == 'l')) then
      redis.call('HDEL', key, all[i])
    end
  end
end
-- What the caller's view says of the hash: 'ok'; 'behind' (a reset happened since it
-- registered, or it never did: it must register); or a reset is due: 'lost' (the hash is
-- gone: a Redis restarted empty) or 'rolled back' (older than what the caller has seen or
-- written: stale persistence, a replica that lost the last writes).
local function epoch_status(key, host, epoch, seen, incarnation, mine)
  local e = redis.call('HGET', key, 'e')
  if not e then return 'lost' end
  e = tonumber(e)
  if epoch > e then return 'rolled back' end
  if epoch < e then return 'behind' end
  if tonumber(redis.call('HGET', key, 's') or 0) < seen then return 'rolled back' end
  if redis.call('HGET', key, 'i:' .. host) ~= incarnation then return 'behind' end
  if tonumber(redis.call('HGET', key, 'o:' .. host) or -1) < mine then return 'rolled back' end
  return 'ok'
end
-- A new epoch: every host's exposure becomes provisional (the largest known figure), claims
-- wait for each host with a live lease until it registers again, and for a grace period.
local function reset(key, epoch, now, known, grace)
  local hosts, _, leases = tally(key, now)
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
  redis.call('HSET', key, 'e', epoch, 's', 0, 'c', now + grace)
end
local function wrote(key, host, version)
  raise_to(key, 'o:' .. host, version)
  return redis.call('HINCRBY', key, 's', 1)
end
"""

REGISTER = (
    _NOW
    + _EXPOSURE
    + """
-- KEYS[1] exposure hash. ARGV: host, epoch, seen, incarnation, newest version written,
--   positions, version, lease ms, grace ms, n live, then n x (id, notional, approved 1/0),
--   then the members the host knows: (host, exposure, lease) ...
-- The host's whole exposure, replacing what the fleet held for it unless newer figures of
-- the same segment are there already; starts a new epoch when one is due. Returns
-- {epoch, sequence, status, ms of grace left}.
local key, host, incarnation = KEYS[1], ARGV[1], ARGV[4]
local epoch, seen, mine = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local version, n = tonumber(ARGV[7]), tonumber(ARGV[10])
local known = {}
for i = 11 + 3 * n, #ARGV do known[#known + 1] = ARGV[i] end
local status = epoch_status(key, host, epoch, seen, incarnation, mine)
if status == 'lost' or status == 'rolled back' then
  reset(key, math.max(epoch, tonumber(redis.call('HGET', key, 'e') or 0)) + 1, now, known, tonumber(ARGV[9]))
elseif status == 'behind' then  -- what the caller knows of hosts not registered now
  for i = 1, #known, 3 do
    local other = known[i]
    if other ~= host and redis.call('HEXISTS', key, 'i:' .. other) == 0 then
      raise_to(key, 'x:' .. other, tonumber(known[i + 1]))
      if tonumber(known[i + 2]) > now then raise_to(key, 'w:' .. other, tonumber(known[i + 2])) end
    end
  end
end
if redis.call('HGET', key, 'i:' .. host) ~= incarnation then  -- another segment of that name, or none yet
  drop_host(key, host, true)
  redis.call('HSET', key, 'i:' .. host, incarnation)
end
local held = tonumber(redis.call('HGET', key, 'v:' .. host) or -1)
if version > held then
  redis.call('HSET', key, 'g:' .. host, ARGV[6], 'v:' .. host, version)
  local live = {}
  for i = 0, n - 1 do live[ARGV[11 + 3 * i]] = i end
  local prefix = 'r:' .. host .. ':'
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, #prefix) == prefix and string.find(f, ':', #prefix + 1, true) == nil then
      local at = tonumber(string.match(all[i + 1], ',(.*)$'))
      if live[string.sub(f, #prefix + 1)] == nil and at < version then redis.call('HDEL', key, f) end
    end
  end
  for i = 0, n - 1 do
    if ARGV[13 + 3 * i] == '1' then
      redis.call('HSETNX', key, prefix .. ARGV[11 + 3 * i], ARGV[12 + 3 * i] .. ',' .. version)
    end
  end
end
redis.call('HDEL', key, 'x:' .. host, 'w:' .. host)
redis.call('HSET', key, 'l:' .. host, now + tonumber(ARGV[8]))
local s = wrote(key, host, version)
local grace = math.max(0, tonumber(redis.call('HGET', key, 'c') or 0) - now)
return {tonumber(redis.call('HGET', key, 'e')), s, status, grace}
"""
)

CLAIM = (
    _NOW
    + _EXPOSURE
    + """
-- KEYS[1] exposure hash, KEYS[2] channel. ARGV: host, epoch, seen, incarnation, newest
-- version written, reservation id, notional, version, limit (-1: none).
-- A reservation, approved when the fleet's exposure stays within the limit with it; the
-- host's new exposure is announced, so every host knows it as soon as the claimer does.
-- Returns {code, fleet exposure, sequence}: code 'ok', 'limit', 'wait' (a new epoch's
-- grace, or a host not registered since a reset), or 'epoch' (the caller must register).
local key, host = KEYS[1], ARGV[1]
if epoch_status(key, host, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])) ~= 'ok' then
  return {'epoch', '0', 0}
end
if now < tonumber(redis.call('HGET', key, 'c') or 0) then return {'wait', '0', 0} end
local hosts, total, _, waiting = tally(key, now)
if waiting then return {'wait', '0', 0} end
local notional, limit = tonumber(ARGV[7]), tonumber(ARGV[9])
if limit >= 0 and total + notional > limit * (1 + LIMIT_TOLERANCE) + LIMIT_EPSILON then
  return {'limit', tostring(total), 0}
end
redis.call('HSET', key, 'r:' .. host .. ':' .. ARGV[6], ARGV[7] .. ',' .. ARGV[8])
local s = wrote(key, host, tonumber(ARGV[8]))
redis.call('PUBLISH', KEYS[2], cjson.encode({kind = 'exposure', host = host, total = (hosts[host] or 0) + notional}))
return {'ok', tostring(total + notional), s}
"""
)

SYNC = (
    _NOW
    + _EXPOSURE
    + """
-- KEYS[1] exposure hash. ARGV: host, epoch, seen, incarnation, newest version written,
-- positions, version, then reservation ids that ended.
-- The host's positions (a newer ledger version replaces an older one) and its ended
-- reservations; never refused. Returns {code, sequence}: 'ok', or 'epoch' (register first).
local key, host = KEYS[1], ARGV[1]
if epoch_status(key, host, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])) ~= 'ok' then
  return {'epoch', 0}
end
local version = tonumber(ARGV[7])
if version > tonumber(redis.call('HGET', key, 'v:' .. host) or -1) then
  redis.call('HSET', key, 'g:' .. host, ARGV[6], 'v:' .. host, version)
end
for i = 8, #ARGV do redis.call('HDEL', key, 'r:' .. host .. ':' .. ARGV[i]) end
return {'ok', wrote(key, host, version)}
"""
)

RENEW = (
    _NOW
    + _EXPOSURE
    + """
-- KEYS[1] exposure hash. ARGV: host, epoch, seen, incarnation, newest version written, lease ms
-- The host's lease, and what it should know of the members. Returns {code, sequence,
-- then per member: host, exposure, lease}; code 'ok' or 'epoch' (register first).
local key, host = KEYS[1], ARGV[1]
if epoch_status(key, host, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])) ~= 'ok' then
  return {'epoch', 0}
end
redis.call('HSET', key, 'l:' .. host, now + tonumber(ARGV[6]))
local hosts, _, leases = tally(key, now)
local out = {'ok', tonumber(redis.call('HGET', key, 's') or 0)}
for member, amount in pairs(hosts) do
  out[#out + 1] = member
  out[#out + 1] = tostring(amount)
  out[#out + 1] = leases[member] or 0
end
return out
"""
)

FORGET = (
    _NOW
    + _EXPOSURE
    + """
-- KEYS[1] exposure hash; ARGV: host. An operator's word that a host is gone and holds
-- nothing: every figure of it is dropped (a host that is alive registers again at its next
-- call). Returns whether the fleet held anything of it.
local before = redis.call('HLEN', KEYS[1])
drop_host(KEYS[1], ARGV[1], false)
return before - redis.call('HLEN', KEYS[1])
"""
)

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
