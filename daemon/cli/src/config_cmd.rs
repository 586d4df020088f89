//! `mesh config plan DIR`: what a reload of DIR would change, like `terraform plan`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use mesh_client::Method;
use serde_json::{json, Value};

use crate::output::{print_json, Format, HttpArgs};

/// `mesh config ...`
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// Config commands.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Show the changes a reload of these files would make (exit 0: none, 2: some, 1: errors)
    Plan {
        /// Config directories or files, as the agent reads them
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
}

fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<Value>> {
    let sources: Vec<mesh_config::Source> = paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                mesh_config::Source::Dir(p.clone())
            } else {
                mesh_config::Source::File(p.clone())
            }
        })
        .collect();
    let mut out = Vec::new();
    for file in mesh_config::expand(&sources)? {
        // The agent names owners by absolute path, so plan with the same names.
        let abs = std::path::absolute(&file).unwrap_or(file.clone());
        let content =
            std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        out.push(json!({"Path": abs, "Content": content}));
    }
    Ok(out)
}

/// Runs a config command.
pub async fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Plan {
        paths,
        format,
        http,
    } = &args.command;
    let body = json!({ "Files": files(paths)? });
    let v = http
        .client()?
        .write_json(Method::POST, "agent/config/plan", &[], Some(&body))
        .await?;
    let errors = v["Errors"].as_array().cloned().unwrap_or_default();
    let changes = v["Changes"].as_array().cloned().unwrap_or_default();
    if *format == Format::Json {
        print_json(&v)?;
    } else {
        for e in &errors {
            eprintln!("Error: {}", e.as_str().unwrap_or_default());
        }
        let (mut add, mut change, mut destroy) = (0, 0, 0);
        for c in &changes {
            let (sign, counter) = match c["Action"].as_str() {
                Some("create") => ("+", &mut add),
                Some("update") => ("~", &mut change),
                _ => ("-", &mut destroy),
            };
            *counter += 1;
            let at = c["At"].as_str().unwrap_or_default();
            let at = if at.is_empty() {
                String::new()
            } else {
                format!("  ({at})")
            };
            println!(
                "  {sign} {}{at}",
                c["Resource"].as_str().unwrap_or_default()
            );
        }
        if errors.is_empty() {
            if changes.is_empty() {
                println!("No changes. The cluster matches the configuration.");
            } else {
                println!("\nPlan: {add} to add, {change} to change, {destroy} to destroy.");
            }
        }
    }
    Ok(if !errors.is_empty() {
        ExitCode::FAILURE
    } else if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
