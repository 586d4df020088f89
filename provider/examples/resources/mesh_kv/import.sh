terraform import mesh_kv.limit app/config/limit
