terraform import mesh_ca_config.ca ca
