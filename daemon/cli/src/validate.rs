//! `mesh validate FILE|DIR...`: check agent config offline, errors as file:line:col.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mesh_config::{RawConfig, RuntimeConfig, Source};

/// Flags of `mesh validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Validate as `mesh agent -dev` would (data_dir becomes optional)
    #[arg(long)]
    pub dev: bool,
    /// Only report errors
    #[arg(long)]
    pub quiet: bool,
    /// Config files or directories, merged in the order given
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
}

/// Checks every file (reporting each bad one), then the merged result.
pub fn run(args: &ValidateArgs) -> ExitCode {
    let errors = check(args);
    for error in &errors {
        eprintln!("{error}");
    }
    if !errors.is_empty() {
        return ExitCode::FAILURE;
    }
    if !args.quiet {
        println!("Configuration is valid!");
    }
    ExitCode::SUCCESS
}

/// Every error found, each naming its place.
pub fn check(args: &ValidateArgs) -> Vec<String> {
    let sources: Vec<Source> = args
        .paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                Source::Dir(p.clone())
            } else {
                Source::File(p.clone())
            }
        })
        .collect();
    let files = match mesh_config::expand(&sources) {
        Ok(files) => files,
        Err(e) => return vec![e.to_string()],
    };
    if files.is_empty() {
        return vec!["no .hcl or .json config files found".into()];
    }
    let mut merged = RawConfig {
        dev: args.dev,
        ..RawConfig::default()
    };
    let mut errors = Vec::new();
    for file in &files {
        match mesh_config::load_file(file) {
            Ok(raw) => merged = merged.merge(raw),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        match RuntimeConfig::build(merged) {
            Ok(config) => {
                for note in &config.deprecations {
                    eprintln!("warning: {note}");
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        // Resource blocks: each must parse into what the agent would apply.
        match mesh_config::load_resources(&files) {
            Ok(decls) => {
                if let Err(e) = mesh_agent::check_declarations(&decls) {
                    errors.extend(e);
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(paths: Vec<PathBuf>) -> ValidateArgs {
        ValidateArgs {
            dev: false,
            quiet: true,
            paths,
        }
    }

    #[test]
    fn reports_every_bad_file_with_positions() {
        let dir = std::env::temp_dir().join(format!("mesh-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.hcl"), "datacenter = \"dc1\"\nserverr = true\n").unwrap();
        std::fs::write(dir.join("b.json"), "{\n  \"ports\": {\"http\": \"x\"}\n}\n").unwrap();
        std::fs::write(dir.join("ignored.txt"), "not config").unwrap();
        let errors = check(&args(vec![dir.clone()]));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].ends_with("a.hcl:2:1: unknown key `serverr`, did you mean `server`?"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].contains("b.json:2:21: `ports.http`"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn the_repository_examples_are_valid() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent");
        for name in ["server.hcl", "server.json", "client.hcl"] {
            assert_eq!(
                check(&args(vec![dir.join(name)])),
                Vec::<String>::new(),
                "{name}"
            );
        }
        let dev = ValidateArgs {
            dev: true,
            ..args(vec![dir.join("dev.hcl")])
        };
        assert_eq!(check(&dev), Vec::<String>::new());
    }

    #[test]
    fn the_mesh_d_examples_are_valid() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh.d");
        let dev = ValidateArgs {
            dev: true,
            ..args(vec![dir])
        };
        assert_eq!(check(&dev), Vec::<String>::new());
    }

    #[test]
    fn resource_errors_name_the_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.hcl"),
            "intention \"web\" \"api\" {\n  action = \"permit\"\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.hcl"),
            "\nintention \"web\" \"api\" {\n  action = \"deny\"\n}\n",
        )
        .unwrap();
        let errors = check(&ValidateArgs {
            dev: true,
            ..args(vec![dir.path().to_path_buf()])
        });
        assert!(
            errors
                .iter()
                .any(|e| e.contains("a.hcl:1:1") && e.contains("invalid Action \"permit\"")),
            "{errors:?}"
        );
    }
}
