terraform import mesh_config_entry.web service-defaults/web
