//! Registry-layout docs (docs/index.md, docs/resources/*.md,
//! docs/data-sources/*.md) rendered from the schemas and from the examples,
//! which follow the layout the Terraform Registry and tfplugindocs read:
//! examples/provider/provider.tf, examples/resources/<type>/resource.tf and
//! import.sh, examples/data-sources/<type>/data-source.tf. A test fails when
//! the checked-in pages drift (`MESH_DOCS_WRITE=1` rewrites them).

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tfplug::docs::render_markdown;
    use tfplug::{Provider, Schema};

    use crate::provider::MeshProvider;

    /// Resources whose objects mesh records an owner for (services,
    /// intentions, config entries and the gateways, which are config
    /// entries): their pages carry [`OWNERSHIP`].
    const OWNED: &[&str] = &[
        "mesh_service",
        "mesh_config_entry",
        "mesh_ingress_gateway",
        "mesh_terminating_gateway",
        "mesh_intention",
    ];

    /// The "Ownership" section; `{address}` becomes the resource address
    /// that the page's import.sh uses.
    const OWNERSHIP: &str = "\
mesh records an owner for every service, intention and config entry, and \
objects this resource creates are owned by Terraform. When the object \
already exists and belongs to another owner (a file in a mesh.d directory, \
or a client of the HTTP API), `terraform plan` reports an error on this \
resource instead of planning to overwrite it; a plan to destroy such an \
object stops the same way. Set `takeover = true` to let Terraform take the \
object over when it applies.

To hand the object back, take it out of the configuration without \
destroying it: replace the resource with a `removed` block, or run \
`terraform state rm {address}`.

```terraform
removed {
  from = {address}

  lifecycle {
    destroy = false
  }
}
```

The file or an API client can then take the object over again by writing \
it with `?takeover=true`.
";

    /// One sentence per resource on the ID its `import` accepts.
    const IMPORT_IDS: &[(&str, &str)] = &[
        (
            "mesh_service",
            "The ID is `<node>/<service_id>`: the catalog node, a slash, then the service instance ID (the service name unless `service_id` is set).",
        ),
        (
            "mesh_config_entry",
            "The ID is `<kind>/<name>`, the entry's kind and name joined by a slash.",
        ),
        (
            "mesh_ingress_gateway",
            "The ID is the gateway's name, which is also the name of its `ingress-gateway` config entry.",
        ),
        (
            "mesh_terminating_gateway",
            "The ID is the gateway's name, which is also the name of its `terminating-gateway` config entry.",
        ),
        ("mesh_kv", "The ID is the key's path, as in `path`."),
        ("mesh_key_prefix", "The ID is the prefix, as in `path_prefix`."),
        ("mesh_keys", "The ID is the key paths, comma-separated; imported keys have `delete = false`."),
        (
            "mesh_prepared_query",
            "The ID is the query's ID (a UUID), as `GET /v1/query` lists it.",
        ),
        (
            "mesh_intention",
            "The ID is `<source>/<destination>`; quote it in the shell when the source is the wildcard (`'*/db'`).",
        ),
        (
            "mesh_ca_config",
            "A cluster has one CA configuration, so the ID is always `ca`.",
        ),
        (
            "mesh_acl_policy",
            "The ID is the policy's ID (a UUID), or `name:<name>` to find the policy by its name.",
        ),
        (
            "mesh_acl_token",
            "The ID is the token's accessor ID (a UUID), never its secret.",
        ),
        ("mesh_acl_role", "The ID is the role's ID (a UUID)."),
        ("mesh_acl_auth_method", "The ID is the auth method's name."),
        ("mesh_acl_binding_rule", "The ID is the binding rule's ID (a UUID)."),
    ];

    fn page(kind: &str, name: &str, schema: &Schema, example: &str) -> String {
        let mut out = format!(
            "---\npage_title: \"{name} {kind} - mesh\"\ndescription: |-\n  {}\n---\n\n# {name} ({kind})\n\n{}\n",
            schema.block.description.lines().next().unwrap_or_default(),
            schema.block.description
        );
        out.push_str(&format!(
            "\n## Example Usage\n\n```terraform\n{}\n```\n",
            example.trim()
        ));
        out.push_str("\n## Schema\n\n");
        render_markdown(&schema.block, 3, &mut out);
        out
    }

    /// An example file the docs embed: a missing one fails, naming it
    /// (tests/it/terraform.rs formats and validates each with terraform).
    fn example(root: &Path, rel: &str) -> String {
        std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| {
            panic!("examples/{rel}: {e}; every resource needs resource.tf and import.sh, every data source data-source.tf")
        })
    }

    /// The address import.sh imports to (`mesh_kv.limit`).
    fn import_address(script: &str, rel: &str, name: &str) -> String {
        let prefix = format!("{name}.");
        script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("terraform import "))
            .filter_map(|rest| rest.split_whitespace().next())
            .find(|address| address.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{rel}: no `terraform import {name}.<name> <id>` line"))
            .to_string()
    }

    #[test]
    fn docs_match_the_schema() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let examples = root.join("examples");
        let p = MeshProvider::default();
        let registered: Vec<String> = p
            .resources()
            .iter()
            .map(|r| r.type_name().to_string())
            .collect();
        for name in OWNED.iter().chain(IMPORT_IDS.iter().map(|(n, _)| n)) {
            assert!(
                registered.iter().any(|r| r == name),
                "{name} is listed in docs.rs but the provider registers no such resource"
            );
        }
        let mut pages = vec![(
            "docs/index.md".to_string(),
            page(
                "Provider",
                "mesh",
                &p.schema(),
                &example(&examples, "provider/provider.tf"),
            ),
        )];
        for r in p.resources() {
            let name = r.type_name();
            let short = name.trim_start_matches("mesh_");
            let ex = example(&examples, &format!("resources/{name}/resource.tf"));
            let rel = format!("resources/{name}/import.sh");
            let import = example(&examples, &rel);
            let address = import_address(&import, &rel, name);
            let id = IMPORT_IDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| *s)
                .unwrap_or_else(|| panic!("{name}: no sentence on its import ID in IMPORT_IDS"));
            let mut text = page("Resource", name, &r.schema(), &ex);
            if OWNED.contains(&name) {
                text.push_str(&format!(
                    "\n## Ownership\n\n{}",
                    OWNERSHIP.replace("{address}", &address)
                ));
            }
            text.push_str(&format!(
                "\n## Import\n\n{id}\n\n```shell\n{}\n```\n",
                import.trim()
            ));
            pages.push((format!("docs/resources/{short}.md"), text));
        }
        for d in p.data_sources() {
            let name = d.type_name();
            let short = name.trim_start_matches("mesh_");
            let ex = example(&examples, &format!("data-sources/{name}/data-source.tf"));
            pages.push((
                format!("docs/data-sources/{short}.md"),
                page("Data Source", name, &d.schema(), &ex),
            ));
        }
        let write = std::env::var_os("MESH_DOCS_WRITE").is_some();
        let mut stale = Vec::new();
        for (rel, text) in pages {
            let path = root.join(&rel);
            if std::fs::read_to_string(&path).unwrap_or_default() != text {
                if write {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, &text).unwrap();
                }
                stale.push(rel);
            }
        }
        // Rewriting never makes the run pass: a stale page is always a failure.
        assert!(
            stale.is_empty(),
            "{stale:?} stale (rewritten if MESH_DOCS_WRITE was set; review and commit): run MESH_DOCS_WRITE=1 cargo test -p terraform-provider-mesh"
        );
    }
}
