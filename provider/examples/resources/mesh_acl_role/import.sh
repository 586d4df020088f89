terraform import mesh_acl_role.web 6a1c44e2-6f43-4d29-9a3f-4d5cba1a8f10
