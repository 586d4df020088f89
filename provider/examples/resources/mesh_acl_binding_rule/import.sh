terraform import mesh_acl_binding_rule.service 2f7d0b8e-3a31-4b41-8b52-0c9e4f1d6a77
