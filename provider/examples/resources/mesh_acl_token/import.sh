terraform import mesh_acl_token.web 9b2e6c1d-7f3a-4e58-b0c4-2a1d8e5f6b73
