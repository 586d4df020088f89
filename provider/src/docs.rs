//! Registry-layout docs (docs/index.md, docs/resources/*.md,
//! docs/data-sources/*.md) rendered from the schemas; a test fails when the
//! checked-in files drift (`MESH_DOCS_WRITE=1` rewrites them).

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tfplug::docs::render_markdown;
    use tfplug::{Provider, Schema};

    use crate::provider::MeshProvider;

    fn page(kind: &str, name: &str, schema: &Schema, example: Option<&str>) -> String {
        let mut out = format!(
            "---\npage_title: \"{name} {kind} - mesh\"\ndescription: |-\n  {}\n---\n\n# {name} ({kind})\n\n{}\n",
            schema.block.description.lines().next().unwrap_or_default(),
            schema.block.description
        );
        if let Some(ex) = example {
            out.push_str(&format!(
                "\n## Example Usage\n\n```terraform\n{}\n```\n",
                ex.trim()
            ));
        }
        out.push_str("\n## Schema\n\n");
        render_markdown(&schema.block, 3, &mut out);
        out
    }

    /// Every resource has an example, and the docs embed it: a missing
    /// file fails, naming it (tests/it/terraform.rs validates each one
    /// with terraform).
    fn example(root: &Path, rel: &str) -> String {
        std::fs::read_to_string(root.join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}; every resource needs an example"))
    }

    #[test]
    fn docs_match_the_schema() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let p = MeshProvider::default();
        let mut pages = vec![(
            "docs/index.md".to_string(),
            page(
                "Provider",
                "mesh",
                &p.schema(),
                Some(example(root, "examples/provider.tf").as_str()),
            ),
        )];
        for r in p.resources() {
            let name = r.type_name();
            let ex = example(root, &format!("examples/resources/{name}.tf"));
            let short = name.trim_start_matches("mesh_");
            pages.push((
                format!("docs/resources/{short}.md"),
                page("Resource", name, &r.schema(), Some(ex.as_str())),
            ));
        }
        for d in p.data_sources() {
            let name = d.type_name();
            let short = name.trim_start_matches("mesh_");
            pages.push((
                format!("docs/data-sources/{short}.md"),
                page("Data Source", name, &d.schema(), None),
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
