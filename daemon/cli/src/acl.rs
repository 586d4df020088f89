//! `mesh acl bootstrap`, `mesh acl policy create|read|list|delete`,
//! `mesh acl token create|read|list|delete` (Consul's CLI habits).

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::output::{print_json, print_table, Format, HttpArgs};

/// `mesh acl ...`
#[derive(Debug, Clone, Args)]
pub struct AclArgs {
    #[command(subcommand)]
    pub command: AclCommand,
}

/// ACL commands.
#[derive(Debug, Clone, Subcommand)]
pub enum AclCommand {
    /// Create the first management token (once per cluster)
    Bootstrap {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Manage policies
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage tokens
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage roles
    Role {
        #[command(subcommand)]
        command: crate::acl_auth::RoleCommand,
    },
    /// Manage auth methods
    AuthMethod {
        #[command(subcommand)]
        command: crate::acl_auth::AuthMethodCommand,
    },
    /// Manage binding rules
    BindingRule {
        #[command(subcommand)]
        command: crate::acl_auth::BindingRuleCommand,
    },
    /// Show the built-in templated policies
    TemplatedPolicy {
        #[command(subcommand)]
        command: crate::acl_auth::TemplatedPolicyCommand,
    },
}

/// `mesh acl policy ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy; -rules takes the text, or @FILE to read it
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        rules: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show a policy with its rules
    Read {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// List policies
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Delete a policy
    Delete {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        http: HttpArgs,
    },
}

/// `mesh acl token ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Create a token carrying the named policies, roles and identities
    Create {
        /// Policy name (repeatable)
        #[arg(long = "policy-name")]
        policy_names: Vec<String>,
        /// Role name (repeatable)
        #[arg(long = "role-name")]
        role_names: Vec<String>,
        #[command(flatten)]
        identities: crate::acl_auth::IdentityFlags,
        /// The token expires after this long (Go duration, 1m to 24h)
        #[arg(long = "expires-ttl")]
        expires_ttl: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show a token (its secret only to management tokens)
    Read {
        /// Accessor ID; -self for the token in use
        #[arg(long, required_unless_present = "this")]
        id: Option<String>,
        #[arg(long = "self")]
        this: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Copy a token: a new accessor and secret with the same policies
    Clone {
        /// Accessor ID of the token to copy
        #[arg(long)]
        id: String,
        /// Description of the copy [default: the original's]
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// List tokens
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Delete a token
    Delete {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        http: HttpArgs,
    },
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn policy_names(token: &Value) -> String {
    token["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| text(p, "Name"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show_token(token: &Value, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(token),
        Format::Table => {
            let rows = [
                ("AccessorID:", text(token, "AccessorID")),
                ("SecretID:", text(token, "SecretID")),
                ("Description:", text(token, "Description")),
                ("Policies:", policy_names(token)),
                ("Create Time:", text(token, "CreateTime")),
            ];
            for (k, v) in rows {
                println!("{k:<13} {v}");
            }
            if let Some(at) = token["ExpirationTime"].as_str() {
                println!("{:<13} {at}", "Expiration:");
            }
            let names = |key: &str, field: &str| -> Vec<String> {
                token[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e[field].as_str().unwrap_or_default().to_string())
                    .collect()
            };
            for (label, key, field) in [
                ("Roles:", "Roles", "Name"),
                ("Service Identities:", "ServiceIdentities", "ServiceName"),
                ("Node Identities:", "NodeIdentities", "NodeName"),
                ("Templated Policies:", "TemplatedPolicies", "TemplateName"),
            ] {
                let list = names(key, field);
                if !list.is_empty() {
                    println!("{label} {}", list.join(", "));
                }
            }
            Ok(())
        }
    }
}

fn show_policy(p: &Value, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(p),
        Format::Table => {
            println!("ID:           {}", text(p, "ID"));
            println!("Name:         {}", text(p, "Name"));
            println!("Description:  {}", text(p, "Description"));
            println!("Rules:\n{}", text(p, "Rules"));
            Ok(())
        }
    }
}

fn rules_text(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading rules from {path}"))
        }
        None => Ok(arg.to_string()),
    }
}

/// Runs an ACL command.
pub async fn run(args: &AclArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        AclCommand::Bootstrap { format, http } => {
            show_token(&http.client()?.acl_bootstrap().await?, *format)?;
        }
        AclCommand::Policy { command } => policy(command).await?,
        AclCommand::Token { command } => token(command).await?,
        AclCommand::Role { command } => crate::acl_auth::role(command).await?,
        AclCommand::AuthMethod { command } => crate::acl_auth::auth_method(command).await?,
        AclCommand::BindingRule { command } => crate::acl_auth::binding_rule(command).await?,
        AclCommand::TemplatedPolicy { command } => {
            crate::acl_auth::templated_policy_cmd(command).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn policy(command: &PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Create {
            name,
            rules,
            description,
            format,
            http,
        } => {
            let rules = rules_text(rules)?;
            // The same check the servers make, before the request leaves.
            mesh_acl::parse_rules(&rules).with_context(|| format!("policy {name:?}"))?;
            let body = json!({"Name": name, "Rules": rules, "Description": description});
            show_policy(
                &http.client()?.acl_policy_write(None, &body).await?,
                *format,
            )
        }
        PolicyCommand::Read { name, format, http } => {
            let Some(p) = http.client()?.acl_policy_read_by_name(name).await? else {
                bail!("no policy named {name:?}");
            };
            show_policy(&p, *format)
        }
        PolicyCommand::List { format, http } => {
            let list = http.client()?.acl_policies().await?;
            match format {
                Format::Json => print_json(&list),
                Format::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|p| vec![text(p, "Name"), text(p, "ID"), text(p, "Description")])
                        .collect();
                    print_table(&["Name", "ID", "Description"], &rows);
                    Ok(())
                }
            }
        }
        PolicyCommand::Delete { name, http } => {
            let client = http.client()?;
            let Some(p) = client.acl_policy_read_by_name(name).await? else {
                bail!("no policy named {name:?}");
            };
            client.acl_policy_delete(&text(&p, "ID")).await?;
            println!("Policy {name:?} deleted");
            Ok(())
        }
    }
}

async fn token(command: &TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            policy_names,
            role_names,
            identities,
            expires_ttl,
            description,
            format,
            http,
        } => {
            let policies: Vec<Value> = policy_names.iter().map(|n| json!({"Name": n})).collect();
            let mut body = json!({"Description": description, "Policies": policies});
            if !role_names.is_empty() {
                body["Roles"] = role_names.iter().map(|n| json!({"Name": n})).collect();
            }
            identities.add_to(&mut body)?;
            if let Some(ttl) = expires_ttl {
                body["ExpirationTTL"] = ttl.clone().into();
            }
            show_token(&http.client()?.acl_token_write(None, &body).await?, *format)
        }
        TokenCommand::Read {
            id,
            this,
            format,
            http,
        } => {
            let client = http.client()?;
            let t = match (id, this) {
                (_, true) => client.acl_token_self().await?,
                (Some(id), false) => match client.acl_token_read(id).await? {
                    Some(t) => t,
                    None => bail!("no token with AccessorID {id}"),
                },
                (None, false) => bail!("give -id or -self"),
            };
            show_token(&t, *format)
        }
        TokenCommand::Clone {
            id,
            description,
            format,
            http,
        } => {
            let body = match description {
                Some(d) => serde_json::json!({ "Description": d }),
                None => serde_json::json!({}),
            };
            let t = http
                .client()?
                .write_json(
                    mesh_client::Method::PUT,
                    &format!("acl/token/{id}/clone"),
                    &[],
                    Some(&body),
                )
                .await
                .map_err(|e| anyhow::anyhow!("Failed to clone token {id}: {e}"))?;
            show_token(&t, *format)
        }
        TokenCommand::List { format, http } => {
            let list = http.client()?.acl_tokens().await?;
            match format {
                Format::Json => print_json(&list),
                Format::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|t| {
                            vec![
                                text(t, "AccessorID"),
                                text(t, "Description"),
                                policy_names(t),
                            ]
                        })
                        .collect();
                    print_table(&["AccessorID", "Description", "Policies"], &rows);
                    Ok(())
                }
            }
        }
        TokenCommand::Delete { id, http } => {
            http.client()?.acl_token_delete(id).await?;
            println!("Token {id} deleted");
            Ok(())
        }
    }
}
