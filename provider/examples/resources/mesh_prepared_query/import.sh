terraform import mesh_prepared_query.web_primary 8f246b77-f3e1-ff88-5b48-8ec93abf3e05
