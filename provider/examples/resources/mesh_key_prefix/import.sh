terraform import mesh_key_prefix.app_config app/config/
