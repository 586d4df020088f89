terraform import mesh_intention.web_to_db web/db
