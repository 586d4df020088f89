//! The provider's documented examples, its registry-layout examples and
//! the mesh-service module, run by the real terraform CLI (1.11): init from
//! a filesystem mirror, validate, fmt, `terraform test`, apply and destroy.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::http;
use crate::terraform::{get, provider_bin, terraform, Tf};

/// Copies a tree of Terraform files, leaving out what `terraform init` or
/// `apply` may have left in it (.terraform/, the lock file, state).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".terraform") || name.starts_with("terraform.tfstate") {
            continue;
        }
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A CLI config under `root` that installs the provider the way `terraform
/// init` installs a published one, from a filesystem mirror (no network).
fn mirror_cli_config(root: &Path) -> PathBuf {
    let platform = root.join("mirror/registry.terraform.io/mesh/mesh/0.1.0/linux_amd64");
    std::fs::create_dir_all(&platform).unwrap();
    std::fs::copy(
        provider_bin(),
        platform.join("terraform-provider-mesh_v0.1.0"),
    )
    .unwrap();
    let cli_config = root.join("mirror.tfrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"mesh/mesh\"]\n  }}\n}}\n",
            root.join("mirror").display()
        ),
    )
    .unwrap();
    cli_config
}

/// Every example under examples/terraform inits offline (provider from a
/// filesystem mirror, modules from modules/) and validates; the module
/// example also applies, plans clean and destroys against a dev agent.
#[tokio::test]
async fn terraform_examples_and_module_work() {
    terraform();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let root = tempfile::tempdir().unwrap();
    copy_tree(
        &repo.join("examples/terraform"),
        &root.path().join("examples/terraform"),
    );
    copy_tree(&repo.join("modules"), &root.path().join("modules"));
    let cli_config = mirror_cli_config(root.path());
    let agent = crate::dev_agent("tf-examples", &root.path().join("agent")).await;
    let addr = agent.http.to_string();
    let var = format!("-var=mesh_address={addr}");
    let examples = root.path().join("examples/terraform");
    let mut names: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 2, "{names:?}");
    for name in names {
        let tf = Tf {
            dir: examples.join(&name),
            cli_config: cli_config.clone(),
        };
        tf.must(&["init", "-backend=false", "-input=false"]).await;
        tf.must(&["validate"]).await;
        if name == "module" {
            tf.must(&["apply", "-auto-approve", "-input=false", &var])
                .await;
            let r = tf
                .run(&["plan", "-detailed-exitcode", "-input=false", &var])
                .await;
            assert_eq!(r.code, 0, "{}", r.out);
            let c = http();
            let web = get(&c, agent.url("/v1/catalog/service/web-sidecar-proxy"))
                .await
                .unwrap();
            assert_eq!(
                web[0]["ServiceProxy"]["Upstreams"][0]["DestinationName"], "db",
                "{web}"
            );
            let i = get(
                &c,
                agent.url("/v1/connect/intentions/exact?source=web&destination=db"),
            )
            .await
            .unwrap();
            assert_eq!(i["Action"], "allow", "{i}");
            tf.must(&["destroy", "-auto-approve", "-input=false", &var])
                .await;
        }
    }
}

/// The resource and data source types the provider registers, as
/// `terraform providers schema -json` reports them from the binary.
async fn registered_types(tf: &Tf) -> (Vec<String>, Vec<String>) {
    let out = tf
        .command(&["providers", "schema", "-json"])
        .output()
        .await
        .expect("terraform runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "terraform providers schema -json:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let schemas = &v["provider_schemas"]["registry.terraform.io/mesh/mesh"];
    let names = |key: &str| -> Vec<String> {
        let mut names: Vec<String> = schemas[key]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    let (resources, data_sources) = (names("resource_schemas"), names("data_source_schemas"));
    assert!(
        !resources.is_empty() && !data_sources.is_empty(),
        "no resources or data sources in:\n{text}"
    );
    (resources, data_sources)
}

/// The provider's examples, in the registry layout its docs are rendered
/// from: every resource it registers has resources/<type>/resource.tf and
/// import.sh, every data source data-sources/<type>/data-source.tf (and no
/// directory names a type it does not register); every import.sh imports to
/// a resource its resource.tf declares; all of it is `terraform fmt` clean;
/// and every example directory validates on its own, beside
/// provider/provider.tf.
#[tokio::test]
async fn the_documented_examples_validate() {
    terraform();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let examples = repo.join("provider/examples");
    let provider_tf = examples.join("provider/provider.tf");
    let root = tempfile::tempdir().unwrap();
    let schema = Tf::new(root.path(), "schema");
    std::fs::copy(provider_tf.as_path(), schema.dir.join("provider.tf")).unwrap();
    let (resources, data_sources) = registered_types(&schema).await;

    let mut missing = Vec::new();
    let mut dirs = vec![examples.join("provider")];
    for (kind, types, files) in [
        ("resources", &resources, &["resource.tf", "import.sh"][..]),
        ("data-sources", &data_sources, &["data-source.tf"][..]),
    ] {
        for name in types {
            let dir = examples.join(kind).join(name);
            for file in files {
                if !dir.join(file).is_file() {
                    missing.push(format!("provider/examples/{kind}/{name}/{file}"));
                }
            }
            dirs.push(dir);
        }
        for entry in std::fs::read_dir(examples.join(kind)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                types.contains(&name),
                "provider/examples/{kind}/{name}: the provider registers no such type ({types:?})"
            );
        }
    }
    assert!(missing.is_empty(), "missing examples: {missing:?}");

    for name in &resources {
        let dir = examples.join("resources").join(name);
        let script = std::fs::read_to_string(dir.join("import.sh")).unwrap();
        let config = std::fs::read_to_string(dir.join("resource.tf")).unwrap();
        let imports: Vec<&str> = script
            .lines()
            .filter(|l| l.starts_with("terraform import "))
            .collect();
        assert!(
            !imports.is_empty(),
            "provider/examples/resources/{name}/import.sh: no `terraform import` line"
        );
        for line in imports {
            let words: Vec<&str> = line.split_whitespace().collect();
            let declared = words
                .get(2)
                .and_then(|address| address.split_once('.'))
                .is_some_and(|(ty, label)| {
                    ty == name && config.contains(&format!("resource \"{name}\" \"{label}\""))
                });
            assert!(
                words.len() == 4 && declared,
                "provider/examples/resources/{name}/import.sh: {line:?} is not `terraform import {name}.<label> <id>` for a resource resource.tf declares"
            );
        }
    }

    let path = examples.to_string_lossy().into_owned();
    let r = schema.run(&["fmt", "-check", "-recursive", &path]).await;
    assert_eq!(
        r.code, 0,
        "terraform fmt -check -recursive provider/examples (the files listed need `terraform fmt`):\n{}",
        r.out
    );

    for dir in dirs {
        let rel = dir.strip_prefix(repo).unwrap().display().to_string();
        let tf = Tf::new(root.path(), &rel.replace('/', "-"));
        std::fs::copy(provider_tf.as_path(), tf.dir.join("provider.tf")).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().path();
            if file.extension().is_some_and(|e| e == "tf") {
                let dest = tf.dir.join(file.file_name().unwrap());
                std::fs::copy(file, dest).unwrap();
            }
        }
        let r = tf.run(&["validate"]).await;
        assert!(
            r.code == 0 && r.out.contains("The configuration is valid"),
            "terraform validate of {rel} (with provider.tf):\n{}",
            r.out
        );
    }
}

/// modules/ is `terraform fmt` clean, and modules/mesh-service passes its
/// own `terraform test` (bad inputs refused at plan time, then an apply
/// against a dev agent), with the provider installed from a filesystem
/// mirror by `terraform init`; its README's example applies, plans clean
/// and destroys.
#[tokio::test]
async fn the_mesh_service_module_passes_terraform_test() {
    terraform();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let root = tempfile::tempdir().unwrap();
    // A copy: init and test write .terraform/ and a lock file.
    copy_tree(&repo.join("modules"), &root.path().join("modules"));
    let cli_config = mirror_cli_config(root.path());
    let modules = Tf {
        dir: root.path().join("modules"),
        cli_config: cli_config.clone(),
    };
    let r = modules.run(&["fmt", "-check", "-recursive"]).await;
    assert_eq!(
        r.code, 0,
        "terraform fmt -check -recursive modules/ (the files listed need `terraform fmt`):\n{}",
        r.out
    );

    let agent = crate::dev_agent("tf-module-test", &root.path().join("agent")).await;
    let addr = agent.http.to_string();
    let module = Tf {
        dir: modules.dir.join("mesh-service"),
        cli_config: cli_config.clone(),
    };
    module.must(&["init", "-input=false"]).await;
    let runs: usize = std::fs::read_dir(module.dir.join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tftest.hcl"))
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("run \""))
                .count()
        })
        .sum();
    assert!(runs >= 2, "modules/mesh-service/tests: {runs} run blocks");
    let r = module
        .run_env(&["test"], &[("MESH_HTTP_ADDR", addr.as_str())])
        .await;
    assert_eq!(r.code, 0, "terraform test:\n{}", r.out);
    assert!(
        r.out
            .contains(&format!("Success! {runs} passed, 0 failed.")),
        "every one of the {runs} runs passes:\n{}",
        r.out
    );
    // terraform test destroyed what its apply created.
    let c = http();
    let left = get(&c, agent.url("/v1/catalog/service/tftest-web"))
        .await
        .unwrap();
    assert_eq!(left, json!([]), "{left}");

    let example = Tf {
        dir: module.dir.join("examples/basic"),
        cli_config,
    };
    let var = format!("-var=mesh_address={addr}");
    example
        .must(&["init", "-backend=false", "-input=false"])
        .await;
    example.must(&["validate"]).await;
    example
        .must(&["apply", "-auto-approve", "-input=false", &var])
        .await;
    let r = example
        .run(&["plan", "-detailed-exitcode", "-input=false", &var])
        .await;
    assert_eq!(r.code, 0, "no changes after the apply:\n{}", r.out);
    let defaults = get(&c, agent.url("/v1/config/service-defaults/api"))
        .await
        .unwrap();
    assert_eq!(defaults["Protocol"], "http", "{defaults}");
    example
        .must(&["destroy", "-auto-approve", "-input=false", &var])
        .await;
}
