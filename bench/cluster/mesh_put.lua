-- wrk: PUT /v1/kv/<prefix>/<thread>-<salt>-<n> with a 64-byte body.
-- Every key is new; an acknowledged write is `200` with body `true`.
-- usage: wrk -s mesh_put.lua http://LEADER -- <prefix>
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
require "wrk_common"

function init(args)
  prefix = args[1] or "bench"
  math.randomseed(os.time() * 1000 + tid)
  salt = string.format("%08x", math.random(0, 0x7fffffff))
  value = string.rep("v", 64)
  n, ok, bad = 0, 0, 0
end

function request()
  n = n + 1
  return wrk.format("PUT", "/v1/kv/" .. prefix .. "/" .. tid .. "-" .. salt .. "-" .. n, nil, value)
end

function acked(status, body)
  return status == 200 and body == "true"
end
