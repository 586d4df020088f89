-- wrk: POST /v3/kv/put {"key": base64, "value": base64} through etcd's gRPC
-- gateway, keys <prefix>/<thread>-<salt>-<n>, a 64-byte value. Every key is
-- new; an acknowledged write is `200` with a response header.
-- usage: wrk -s etcd_put.lua http://LEADER -- <prefix>
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
require "wrk_common"

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local n = 4
    if not b then n = 2 elseif not c then n = 3 end
    for j = 1, 4 do
      if j <= n then
        local k = math.floor(v / 2 ^ (6 * (4 - j))) % 64
        out[#out + 1] = alphabet:sub(k + 1, k + 1)
      else
        out[#out + 1] = "="
      end
    end
  end
  return table.concat(out)
end

function init(args)
  prefix = args[1] or "bench"
  math.randomseed(os.time() * 1000 + tid)
  salt = string.format("%08x", math.random(0, 0x7fffffff))
  value = b64(string.rep("v", 64))
  headers = { ["Content-Type"] = "application/json" }
  n, ok, bad = 0, 0, 0
end

function request()
  n = n + 1
  local key = b64(prefix .. "/" .. tid .. "-" .. salt .. "-" .. n)
  return wrk.format("POST", "/v3/kv/put", headers,
    '{"key":"' .. key .. '","value":"' .. value .. '"}')
end

function acked(status, body)
  return status == 200 and body:find('"header"', 1, true) ~= nil
end
