terraform import mesh_service.web ext-1/web
