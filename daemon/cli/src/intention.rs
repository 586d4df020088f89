//! `mesh intention create|get|list|delete|check|match`.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mesh_client::Method;
use serde_json::{json, Value};

use crate::output::{print_json, print_table, Format, HttpArgs};

/// `mesh intention ...`
#[derive(Debug, Clone, Args)]
pub struct IntentionArgs {
    #[command(subcommand)]
    pub command: IntentionCommand,
}

/// Intention commands.
#[derive(Debug, Clone, Subcommand)]
pub enum IntentionCommand {
    /// Create (or with -replace, update) the intention SRC => DST
    Create {
        /// Allow traffic (the default)
        #[arg(long, conflicts_with = "deny")]
        allow: bool,
        /// Deny traffic
        #[arg(long)]
        deny: bool,
        /// Replace an existing intention for the same pair
        #[arg(long)]
        replace: bool,
        /// Free-form description
        #[arg(long, default_value = "")]
        description: String,
        /// Metadata as key=value (repeatable)
        #[arg(long, value_name = "KEY=VALUE")]
        meta: Vec<String>,
        source: String,
        destination: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show the intention SRC => DST
    Get {
        source: String,
        destination: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// List every intention, highest precedence first
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Delete the intention SRC => DST
    Delete {
        source: String,
        destination: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Would SRC be allowed to connect to DST? Exit 0 allowed, 2 denied
    Check {
        source: String,
        destination: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Intentions that apply to a destination (or with -source, from a source)
    Match {
        /// Match by source instead of destination
        #[arg(long)]
        source: bool,
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
}

fn action(i: &Value) -> String {
    match i["Action"].as_str() {
        Some(a) => a.to_string(),
        None => format!(
            "L7 ({} permissions)",
            i["Permissions"].as_array().map_or(0, Vec::len)
        ),
    }
}

fn rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|i| {
            vec![
                i["SourceName"].as_str().unwrap_or_default().to_string(),
                i["DestinationName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                action(i),
                i["Precedence"].to_string(),
                i["Owner"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect()
}

fn print_list(list: &[Value], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&list),
        Format::Table => {
            print_table(
                &["Source", "Destination", "Action", "Precedence", "Owner"],
                &rows(list),
            );
            Ok(())
        }
    }
}

/// Runs an intention command.
pub async fn run(args: &IntentionArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        IntentionCommand::Create {
            allow: _,
            deny,
            replace,
            description,
            meta,
            source,
            destination,
            http,
        } => {
            let client = http.client()?;
            let pair = [
                ("source", source.as_str()),
                ("destination", destination.as_str()),
            ];
            if !replace
                && client
                    .get_json("connect/intentions/exact", &pair)
                    .await?
                    .is_some()
            {
                bail!("an intention {source} => {destination} already exists; use -replace to update it");
            }
            let mut meta_map = serde_json::Map::new();
            for kv in meta {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("-meta {kv:?}: expected KEY=VALUE"))?;
                meta_map.insert(k.to_string(), v.into());
            }
            let body = json!({
                "Action": if *deny { "deny" } else { "allow" },
                "Description": description,
                "Meta": meta_map,
            });
            client
                .write_json(Method::PUT, "connect/intentions/exact", &pair, Some(&body))
                .await?;
            println!(
                "Created: {source} => {destination} ({})",
                if *deny { "deny" } else { "allow" }
            );
            Ok(ExitCode::SUCCESS)
        }
        IntentionCommand::Get {
            source,
            destination,
            format,
            http,
        } => {
            let pair = [
                ("source", source.as_str()),
                ("destination", destination.as_str()),
            ];
            let Some(i) = http
                .client()?
                .get_json("connect/intentions/exact", &pair)
                .await?
            else {
                bail!("no intention {source} => {destination}");
            };
            match format {
                Format::Json => print_json(&i)?,
                Format::Table => {
                    let mut lines = vec![
                        vec!["Source:".to_string(), source.clone()],
                        vec!["Destination:".to_string(), destination.clone()],
                        vec!["Action:".to_string(), action(&i)],
                        vec!["Precedence:".to_string(), i["Precedence"].to_string()],
                        vec![
                            "ID:".to_string(),
                            i["ID"].as_str().unwrap_or_default().into(),
                        ],
                        vec![
                            "Owner:".to_string(),
                            i["Owner"].as_str().unwrap_or_default().into(),
                        ],
                        vec![
                            "Description:".to_string(),
                            i["Description"].as_str().unwrap_or_default().into(),
                        ],
                    ];
                    if let Some(meta) = i["Meta"].as_object() {
                        for (k, v) in meta {
                            lines.push(vec![
                                format!("Meta[{k}]:"),
                                v.as_str().unwrap_or_default().into(),
                            ]);
                        }
                    }
                    for l in lines {
                        println!("{:<14}{}", l[0], l[1]);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        IntentionCommand::List { format, http } => {
            let list = http
                .client()?
                .get_json("connect/intentions", &[])
                .await?
                .unwrap_or_default();
            print_list(list.as_array().map_or(&[][..], Vec::as_slice), *format)?;
            Ok(ExitCode::SUCCESS)
        }
        IntentionCommand::Delete {
            source,
            destination,
            http,
        } => {
            let pair = [
                ("source", source.as_str()),
                ("destination", destination.as_str()),
            ];
            http.client()?
                .write_json(Method::DELETE, "connect/intentions/exact", &pair, None)
                .await?;
            println!("Intention deleted: {source} => {destination}");
            Ok(ExitCode::SUCCESS)
        }
        IntentionCommand::Check {
            source,
            destination,
            http,
        } => {
            let pair = [
                ("source", source.as_str()),
                ("destination", destination.as_str()),
            ];
            let v = http
                .client()?
                .get_json("connect/intentions/check", &pair)
                .await?
                .unwrap_or_default();
            let allowed = v["Allowed"].as_bool().unwrap_or(false);
            println!(
                "{} ({})",
                if allowed { "Allowed" } else { "Denied" },
                v["Reason"].as_str().unwrap_or_default()
            );
            Ok(if allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        IntentionCommand::Match {
            source,
            name,
            format,
            http,
        } => {
            let by = if *source { "source" } else { "destination" };
            let v = http
                .client()?
                .get_json("connect/intentions/match", &[("by", by), ("name", name)])
                .await?
                .unwrap_or_default();
            let list = v[name.as_str()].as_array().cloned().unwrap_or_default();
            print_list(&list, *format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
