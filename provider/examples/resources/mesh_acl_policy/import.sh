# By the policy's ID (a UUID)...
terraform import mesh_acl_policy.web 5e1f4a8c-2b0d-4c3e-9a7f-6d8b1c2e3f40
# ...or by its name.
terraform import mesh_acl_policy.web name:web
