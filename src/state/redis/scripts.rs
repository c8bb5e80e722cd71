//! The Lua scripts behind every read and write. Storage layout is daprd's `state.redis`
//! (components-contrib `state/redis/redis.go`): one hash per key with fields `data` (the value's
//! bytes), `version` (the etag: a decimal counter bumped on every write) and `first-write`
//! (present once a write used first-write concurrency). Scripts keep each call one round trip and
//! make check-and-set atomic, as daprd's `setDefaultQuery` / `delDefaultQuery` do.

use redis::Script;

/// Reads one key. Returns `{kind, data, version, pttl}`:
/// - kind 0: absent (only `{0}` is returned);
/// - kind 1: a daprd hash (`data` + `version`);
/// - kind 2: a plain string, the layout before daprd moved to hashes; daprd reads it with `GET`
///   and no etag (`directGet`), so do we.
///
/// `pttl` is `PTTL` (-1 = no expiry), read in the same script so it belongs to the same version.
/// A hash without `data` or `version` is an error, with daprd's message.
const GET: &str = r#"
local key = KEYS[1]
local kind = redis.call("TYPE", key)["ok"]
if kind == "none" then
  return {0}
end
if kind == "string" then
  return {2, redis.call("GET", key), "", redis.call("PTTL", key)}
end
if kind ~= "hash" then
  return redis.error_reply("WRONGTYPE key " .. key .. " holds a " .. kind .. ", not a state item")
end
local fields = redis.call("HMGET", key, "data", "version")
if not fields[1] or not fields[2] then
  return redis.error_reply("required hash field 'data' or 'version' was not found")
end
return {1, fields[1], fields[2], redis.call("PTTL", key)}
"#;

/// Applies a batch of writes (one for `set`/`delete`, many for a transaction) all-or-nothing.
///
/// KEYS: one per operation. ARGV: five per operation:
/// 1. `set` or `del`;
/// 2. the etag the item must have, `""` for none;
/// 3. the value (unused by `del`);
/// 4. `"0"` for first-write, `"1"` for last-write (daprd's own encoding of its ARGV[3]);
/// 5. expiry: `""` leaves it as it is, `<= 0` persists (`PERSIST`), `> 0` is seconds (`EXPIRE`),
///    exactly as daprd decides between `EXPIRE` and `PERSIST`.
///
/// Nothing in the apply phase may fail, because Redis does not undo a script's earlier writes
/// when a later command errors: every input that could make a command fail is checked first
/// (here, or by the caller: `ttl` is an integer small enough for `EXPIRE`).
///
/// Returns 0 when everything applied, or the 1-based index of the first operation whose check
/// failed, in which case nothing was written. Checks run first, in order, against the state the
/// earlier operations of the batch would leave, so "upsert then upsert with the old etag" fails
/// just as it would one call at a time; only then are the writes applied. Redis runs a script
/// without interleaving other clients and a check failure returns before any write, so there is
/// no partial transaction (daprd's MULTI pipeline cannot roll back a failed etag; this can).
///
/// Rules (daprd's plus the issue's "a missing item never matches an etag"):
/// - with an etag: the item must exist as a hash whose `version` equals it;
/// - first-write without an etag: the key must not exist;
/// - last-write without an etag: always applies; a key holding another type is replaced, as
///   daprd's script does with `DEL`.
///
/// A new item's version starts at the server's clock in microseconds (`TIME`), not at 1 as in
/// daprd, and later writes add 1 as daprd's `HINCRBY` does. Why: with daprd's start at 1, a key
/// deleted and written again re-issues etag "1", so an etag from its previous life matches again.
/// daprd only compares versions as decimal strings and increments them, so it reads and writes
/// these versions unchanged. Versions stay below 2^53, so Lua's doubles hold them exactly.
const WRITE: &str = r#"
local function fresh_version()
  local now = redis.call("TIME")
  return now[1] .. string.format("%06d", tonumber(now[2]))
end

local state = {}
local function current(key)
  local s = state[key]
  if s == nil then
    local kind = redis.call("TYPE", key)["ok"]
    local version = false
    if kind == "hash" then
      version = redis.call("HGET", key, "version")
    end
    s = {kind = kind, version = version}
    state[key] = s
  end
  return s
end

local versions = {}
local replace = {}
for i = 1, #KEYS do
  local b = (i - 1) * 5
  local op, etag, first_write = ARGV[b + 1], ARGV[b + 2], ARGV[b + 4]
  local s = current(KEYS[i])
  if etag ~= "" and s.version ~= etag then
    return i
  end
  if op == "set" then
    if etag == "" and first_write == "0" and s.kind ~= "none" then
      return i
    end
    replace[i] = s.kind ~= "none" and s.kind ~= "hash"
    if s.version then
      local n = tonumber(s.version)
      if not n then
        return redis.error_reply("version of " .. KEYS[i] .. " is not a number: " .. s.version)
      end
      versions[i] = string.format("%.0f", n + 1)
    else
      versions[i] = fresh_version()
    end
    s.kind = "hash"
    s.version = versions[i]
  else
    s.kind = "none"
    s.version = false
  end
end

for i = 1, #KEYS do
  local key = KEYS[i]
  local b = (i - 1) * 5
  if ARGV[b + 1] == "del" then
    redis.call("DEL", key)
  else
    if replace[i] then
      redis.call("DEL", key)
    end
    redis.call("HSET", key, "data", ARGV[b + 3], "version", versions[i])
    if ARGV[b + 4] == "0" then
      redis.call("HSET", key, "first-write", 0)
    end
    local ttl = ARGV[b + 5]
    if ttl ~= "" then
      if tonumber(ttl) > 0 then
        redis.call("EXPIRE", key, ttl)
      else
        redis.call("PERSIST", key)
      end
    end
  end
end
return 0
"#;

/// Both scripts, hashed once; `Script` sends `EVALSHA` and reloads the body after a restart
/// emptied the server's script cache (`NOSCRIPT`).
pub(super) struct Scripts {
    pub get: Script,
    pub write: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            get: Script::new(GET),
            write: Script::new(WRITE),
        }
    }
}
