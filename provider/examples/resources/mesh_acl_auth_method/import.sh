terraform import mesh_acl_auth_method.idp idp
