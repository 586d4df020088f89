"""Drive a mesh agent's ACL API (roles, identities, templated policies,
token expiry, auth methods, binding rules) with python-consul, under
default deny. Usage: python_consul_acl.py HOST:PORT MANAGEMENT_SECRET PEM_FILE"""
import sys

import consul
from consul.exceptions import ACLPermissionDenied, BadRequest

host, port = sys.argv[1].rsplit(":", 1)
management = sys.argv[2]
public_pem = open(sys.argv[3]).read()
c = consul.Consul(host=host, port=int(port), token=management)

# py-consul sends lowercase keys and JSON-encodes the rules it is given.
policy = c.acl.policy.create("py-kv", rules={"key_prefix": {"py/": {"policy": "write"}}})
role = c.acl.role.create(
    "py-app",
    policies_name=["py-kv"],
    service_identities=[{"ServiceName": "web"}],
    templated_policies=[{"builtin/node": {"name": "n7"}}],
)
assert role["Policies"][0]["Name"] == "py-kv", role
assert role["TemplatedPolicies"][0]["TemplateVariables"]["Name"] == "n7", role
assert c.acl.role.read_by_name("py-app")["ID"] == role["ID"]
assert [r["Name"] for r in c.acl.role.list(policy=policy["ID"])] == ["py-app"]

token = c.acl.token.create(
    roles_name=["py-app"],
    node_identities=["edge:dc1"],
    expiration_ttl="1h",
    description="from python",
)
assert token["Roles"][0]["Name"] == "py-app", token
assert token["NodeIdentities"] == [{"NodeName": "edge", "Datacenter": "dc1"}], token
assert token["ExpirationTime"], token
listed = c.acl.token.list(role=role["ID"])
assert [t["AccessorID"] for t in listed] == [token["AccessorID"]], listed

# The token may do what its role grants, nothing else.
t = consul.Consul(host=host, port=int(port), token=token["SecretID"])
assert t.kv.put("py/a", "1")
try:
    t.kv.put("other", "1")
    raise AssertionError("a key outside the role's policy was written")
except ACLPermissionDenied:
    pass

try:
    c.acl.token.create(expiration_ttl="5s")
    raise AssertionError("a 5s TTL was accepted")
except BadRequest as e:
    assert "ExpirationTTL" in str(e), e

templates = c.acl.templated_policy.list()
assert "builtin/service" in templates, templates
preview = c.acl.templated_policy.preview("builtin/service", {"name": "api"})
assert 'service "api"' in preview["Rules"], preview

method = c.acl.auth_method.create(
    "py-jwt", "jwt",
    max_token_ttl="5m",
    config={"JWTValidationPubKeys": [public_pem], "JWTSupportedAlgs": ["ES256"],
            "ClaimMappings": {"service": "svc"}},
)
assert method["MaxTokenTTL"] == "5m0s", method
assert [m["Name"] for m in c.acl.auth_method.list()] == ["py-jwt"]
rule = c.acl.binding_rule.create("py-jwt", "service", "${value.svc}", selector='value.svc != "db"')
assert c.acl.binding_rule.read(rule["ID"])["BindName"] == "${value.svc}"
assert [r["ID"] for r in c.acl.binding_rule.list(auth_method="py-jwt")] == [rule["ID"]]
try:
    c.acl.auth_method.create("py-k8s", "kubernetes", config={})
    raise AssertionError("a kubernetes method was accepted")
except BadRequest as e:
    assert "kubernetes" in str(e), e

assert c.acl.auth_method.delete("py-jwt")
assert c.acl.binding_rule.list() == []
assert c.acl.role.delete(role["ID"])
print("python-consul ACL: all checks passed")
