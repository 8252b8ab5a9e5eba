-- wrk script for bench/compare-etcd: drives etcd's v3 JSON gateway.
--
--   wrk -t T -c C -d 10s --timeout 30s -s bench/compare-etcd.lua \
--       http://127.0.0.1:23790 -- put|range KEYS KEY_BYTES VALUE_BYTES [PREFIX]
--
-- put:   POST PREFIX/kv/put   {"key": base64(key), "value": base64(value)}
-- range: POST PREFIX/kv/range {"key": base64(key)}  (linearizable: etcd's default)
-- PREFIX is /v3 (etcd 3.4+) or /v3beta (3.3). Keys are "key" followed by
-- zero-padded digits, KEY_BYTES long, drawn uniformly from KEYS keys; values
-- are VALUE_BYTES long. wrk keeps its connections alive (HTTP/1.1), one
-- request in flight per connection, so C connections are C clients.
-- At the end one line starting with "WRKJSON " holds the summary as JSON.

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1 = math.floor(n / 262144) % 64
    local d2 = math.floor(n / 4096) % 64
    local d3 = math.floor(n / 64) % 64
    local d4 = n % 64
    out[#out + 1] = alphabet:sub(d1 + 1, d1 + 1) .. alphabet:sub(d2 + 1, d2 + 1) ..
                    (b and alphabet:sub(d3 + 1, d3 + 1) or "=") ..
                    (c and alphabet:sub(d4 + 1, d4 + 1) or "=")
  end
  return table.concat(out)
end

-- Runs in the main thread: give each thread an id (for distinct values and
-- random streams).
local thread_count = 0
function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

local op, nkeys, keys, values, path
local nvalues = 64

function init(args)
  op = args[1]
  nkeys = tonumber(args[2])
  local key_bytes = tonumber(args[3])
  local value_bytes = tonumber(args[4])
  local prefix = args[5] or "/v3"
  if (op ~= "put" and op ~= "range") or not nkeys or not key_bytes or not value_bytes then
    error("usage: -- put|range KEYS KEY_BYTES VALUE_BYTES [PREFIX]")
  end
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
  keys = {}
  local key_format = "key%0" .. (key_bytes - 3) .. "d"
  for k = 0, nkeys - 1 do
    keys[k + 1] = base64(string.format(key_format, k))
  end
  values = {}
  for i = 1, nvalues do
    local v = string.format("wrk-%d-%d-", thread_id or 0, i)
    values[i] = base64(v .. string.rep("x", value_bytes - #v))
  end
  path = prefix .. (op == "put" and "/kv/put" or "/kv/range")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local key = keys[math.random(nkeys)]
  local body
  if op == "put" then
    body = '{"key":"' .. key .. '","value":"' .. values[math.random(nvalues)] .. '"}'
  else
    body = '{"key":"' .. key .. '"}'
  end
  return wrk.format(nil, path, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"mean":%.1f,"max":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
