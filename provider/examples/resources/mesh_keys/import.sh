terraform import mesh_keys.app app/config/limit,app/config/mode
