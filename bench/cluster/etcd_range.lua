-- wrk: a serializable range read of every key under /web/ through etcd's
-- gRPC gateway (POST /v3/kv/range), the etcd counterpart of a health read.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- key "/web/" and range_end "/web0", base64
wrk.body = '{"key":"L3dlYi8=","range_end":"L3dlYjA=","serializable":true}'
