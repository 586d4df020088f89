//! `mesh acl role|auth-method|binding-rule|templated-policy ...`,
//! `mesh login` and `mesh logout` (Consul's flags).

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use mesh_client::Method;
use serde_json::{json, Value};

use crate::output::{print_json, print_table, Format, HttpArgs};

/// `-service-identity NAME[:DC1,DC2]` as Consul's CLI takes it.
pub fn service_identity(arg: &str) -> Value {
    match arg.split_once(':') {
        Some((name, dcs)) => {
            json!({"ServiceName": name, "Datacenters": dcs.split(',').collect::<Vec<_>>()})
        }
        None => json!({"ServiceName": arg}),
    }
}

/// `-node-identity NAME:DC`.
pub fn node_identity(arg: &str) -> anyhow::Result<Value> {
    let (name, dc) = arg
        .split_once(':')
        .ok_or_else(|| anyhow!("-node-identity {arg:?}: NAME:DATACENTER"))?;
    Ok(json!({"NodeName": name, "Datacenter": dc}))
}

/// `-templated-policy NAME` with its `-var name:VALUE`.
pub fn templated_policy(name: &str, vars: &[String]) -> anyhow::Result<Value> {
    let mut v = json!({"TemplateName": name});
    for var in vars {
        match var.split_once(':') {
            Some(("name", value)) => v["TemplateVariables"] = json!({"Name": value}),
            _ => bail!("-var {var:?}: name:VALUE"),
        }
    }
    Ok(v)
}

/// The identity flags shared by `token create` and `role create`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityFlags {
    /// Service identity NAME[:DC,...] (repeatable)
    #[arg(long = "service-identity")]
    pub service_identities: Vec<String>,
    /// Node identity NAME:DC (repeatable)
    #[arg(long = "node-identity")]
    pub node_identities: Vec<String>,
    /// A built-in templated policy (builtin/service, builtin/node, builtin/dns)
    #[arg(long = "templated-policy")]
    pub templated_policy: Option<String>,
    /// The templated policy's variable, name:VALUE
    #[arg(long = "var")]
    pub vars: Vec<String>,
}

impl IdentityFlags {
    /// Adds the identities to a token or role body.
    pub fn add_to(&self, body: &mut Value) -> anyhow::Result<()> {
        if !self.service_identities.is_empty() {
            body["ServiceIdentities"] = self
                .service_identities
                .iter()
                .map(|s| service_identity(s))
                .collect();
        }
        if !self.node_identities.is_empty() {
            body["NodeIdentities"] = self
                .node_identities
                .iter()
                .map(|n| node_identity(n))
                .collect::<anyhow::Result<Vec<_>>>()?
                .into();
        }
        if let Some(t) = &self.templated_policy {
            body["TemplatedPolicies"] = json!([templated_policy(t, &self.vars)?]);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum RoleCommand {
    /// Create a role of policies and identities
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Policy name (repeatable)
        #[arg(long = "policy-name")]
        policy_names: Vec<String>,
        #[command(flatten)]
        identities: IdentityFlags,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show a role
    Read {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// List roles
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Delete a role
    Delete {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        http: HttpArgs,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuthMethodCommand {
    /// Create an auth method; -config takes JSON, or @FILE to read it
    Create {
        /// The method type (jwt)
        #[arg(long = "type")]
        kind: String,
        #[arg(long)]
        name: String,
        #[arg(long = "display-name", default_value = "")]
        display_name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Longest life of a login's token (Go duration)
        #[arg(long = "max-token-ttl", default_value = "")]
        max_token_ttl: String,
        /// local or global
        #[arg(long = "token-locality", default_value = "")]
        token_locality: String,
        #[arg(long)]
        config: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show an auth method
    Read {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// List auth methods
    List {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Delete an auth method, its binding rules and its logins' tokens
    Delete {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        http: HttpArgs,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum BindingRuleCommand {
    /// Create a binding rule for an auth method
    Create {
        #[arg(long)]
        method: String,
        /// service, node, role, policy or templated-policy
        #[arg(long = "bind-type")]
        bind_type: String,
        /// What is bound; ${value.<claim>} is filled in at login
        #[arg(long = "bind-name")]
        bind_name: String,
        /// For templated-policy: name:VALUE
        #[arg(long = "bind-vars")]
        bind_vars: Option<String>,
        /// Which logins it applies to (a filter over value.* and list.*)
        #[arg(long, default_value = "")]
        selector: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show a binding rule
    Read {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// List binding rules
    List {
        #[arg(long, default_value = "")]
        method: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Delete a binding rule
    Delete {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        http: HttpArgs,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TemplatedPolicyCommand {
    /// List the built-in templates
    List {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show a template
    Read {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// The policy a template renders with its variables
    Preview {
        #[arg(long)]
        name: String,
        #[arg(long = "var")]
        vars: Vec<String>,
        #[command(flatten)]
        http: HttpArgs,
    },
}

/// Flags of `mesh login`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// The auth method to log in with
    #[arg(long)]
    pub method: String,
    /// A file holding the bearer token (a JWT)
    #[arg(long = "bearer-token-file")]
    pub bearer_token_file: std::path::PathBuf,
    /// Where to write the new token's secret
    #[arg(long = "token-sink-file")]
    pub token_sink_file: std::path::PathBuf,
    /// Metadata for the token's description, key=value (repeatable)
    #[arg(long)]
    pub meta: Vec<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

async fn call(
    http: &HttpArgs,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    http.client()?
        .write_json(method, path, &[], body)
        .await
        .map_err(|e| anyhow!("{e}"))
}

async fn get(http: &HttpArgs, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Option<Value>> {
    Ok(http.client()?.get_json(path, query).await?)
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn rows(list: &Value, cols: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|e| cols.iter().map(|c| text(e, c)).collect())
        .collect()
}

pub async fn role(command: &RoleCommand) -> anyhow::Result<()> {
    match command {
        RoleCommand::Create {
            name,
            description,
            policy_names,
            identities,
            format,
            http,
        } => {
            let mut body = json!({"Name": name, "Description": description});
            if !policy_names.is_empty() {
                body["Policies"] = policy_names.iter().map(|n| json!({"Name": n})).collect();
            }
            identities.add_to(&mut body)?;
            let role = call(http, Method::PUT, "acl/role", Some(&body))
                .await
                .context("Failed to create role")?;
            show(&role, *format, &["ID", "Name", "Description"])
        }
        RoleCommand::Read { name, format, http } => {
            let Some(role) = get(http, &format!("acl/role/name/{name}"), &[]).await? else {
                bail!("no role named {name:?}");
            };
            show(&role, *format, &["ID", "Name", "Description"])
        }
        RoleCommand::List { format, http } => {
            let list = get(http, "acl/roles", &[]).await?.unwrap_or_default();
            match format {
                Format::Json => print_json(&list),
                Format::Table => {
                    print_table(
                        &["Name", "ID", "Description"],
                        &rows(&list, &["Name", "ID", "Description"]),
                    );
                    Ok(())
                }
            }
        }
        RoleCommand::Delete { name, http } => {
            let Some(role) = get(http, &format!("acl/role/name/{name}"), &[]).await? else {
                bail!("no role named {name:?}");
            };
            call(
                http,
                Method::DELETE,
                &format!("acl/role/{}", text(&role, "ID")),
                None,
            )
            .await?;
            println!("Role {name:?} deleted");
            Ok(())
        }
    }
}

fn show(v: &Value, format: Format, keys: &[&str]) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(v),
        Format::Table => {
            for k in keys {
                println!("{k}: {}", text(v, k));
            }
            for list in [
                "Policies",
                "Roles",
                "ServiceIdentities",
                "NodeIdentities",
                "TemplatedPolicies",
            ] {
                if let Some(items) = v[list].as_array() {
                    println!("{list}:");
                    for item in items {
                        println!("   {item}");
                    }
                }
            }
            Ok(())
        }
    }
}

/// `-config` text: JSON, or `@FILE`.
fn config_arg(arg: &str) -> anyhow::Result<Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).context("-config: not JSON")
}

pub async fn auth_method(command: &AuthMethodCommand) -> anyhow::Result<()> {
    match command {
        AuthMethodCommand::Create {
            kind,
            name,
            display_name,
            description,
            max_token_ttl,
            token_locality,
            config,
            format,
            http,
        } => {
            let body = json!({
                "Name": name, "Type": kind, "DisplayName": display_name,
                "Description": description, "MaxTokenTTL": max_token_ttl,
                "TokenLocality": token_locality, "Config": config_arg(config)?,
            });
            let m = call(http, Method::PUT, "acl/auth-method", Some(&body))
                .await
                .context("Failed to create auth method")?;
            show(
                &m,
                *format,
                &["Name", "Type", "DisplayName", "Description", "MaxTokenTTL"],
            )
        }
        AuthMethodCommand::Read { name, http } => {
            match get(http, &format!("acl/auth-method/{name}"), &[]).await? {
                Some(m) => print_json(&m),
                None => bail!("no auth method named {name:?}"),
            }
        }
        AuthMethodCommand::List { http } => {
            let list = get(http, "acl/auth-methods", &[])
                .await?
                .unwrap_or_default();
            print_table(
                &["Name", "Type", "Description"],
                &rows(&list, &["Name", "Type", "Description"]),
            );
            Ok(())
        }
        AuthMethodCommand::Delete { name, http } => {
            call(
                http,
                Method::DELETE,
                &format!("acl/auth-method/{name}"),
                None,
            )
            .await?;
            println!("Auth method {name:?} deleted");
            Ok(())
        }
    }
}

pub async fn binding_rule(command: &BindingRuleCommand) -> anyhow::Result<()> {
    match command {
        BindingRuleCommand::Create {
            method,
            bind_type,
            bind_name,
            bind_vars,
            selector,
            description,
            http,
        } => {
            let mut body = json!({
                "AuthMethod": method, "BindType": bind_type, "BindName": bind_name,
                "Selector": selector, "Description": description,
            });
            if let Some(vars) = bind_vars {
                match vars.split_once(':') {
                    Some(("name", v)) => body["BindVars"] = json!({"Name": v}),
                    _ => bail!("-bind-vars {vars:?}: name:VALUE"),
                }
            }
            let r = call(http, Method::PUT, "acl/binding-rule", Some(&body))
                .await
                .context("Failed to create binding rule")?;
            println!("ID: {}", text(&r, "ID"));
            Ok(())
        }
        BindingRuleCommand::Read { id, http } => {
            match get(http, &format!("acl/binding-rule/{id}"), &[]).await? {
                Some(r) => print_json(&r),
                None => bail!("no binding rule {id}"),
            }
        }
        BindingRuleCommand::List { method, http } => {
            let query: Vec<(&str, &str)> = if method.is_empty() {
                vec![]
            } else {
                vec![("authmethod", method)]
            };
            let list = get(http, "acl/binding-rules", &query)
                .await?
                .unwrap_or_default();
            print_table(
                &["ID", "AuthMethod", "BindType", "BindName", "Selector"],
                &rows(
                    &list,
                    &["ID", "AuthMethod", "BindType", "BindName", "Selector"],
                ),
            );
            Ok(())
        }
        BindingRuleCommand::Delete { id, http } => {
            call(
                http,
                Method::DELETE,
                &format!("acl/binding-rule/{id}"),
                None,
            )
            .await?;
            println!("Binding rule {id} deleted");
            Ok(())
        }
    }
}

pub async fn templated_policy_cmd(command: &TemplatedPolicyCommand) -> anyhow::Result<()> {
    match command {
        TemplatedPolicyCommand::List { http } => {
            let all = get(http, "acl/templated-policies", &[])
                .await?
                .unwrap_or_default();
            let rows: Vec<Vec<String>> = all
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| vec![k.clone(), text(v, "Description")])
                .collect();
            print_table(&["Name", "Description"], &rows);
            Ok(())
        }
        TemplatedPolicyCommand::Read { name, http } => {
            match get(http, &format!("acl/templated-policy/name/{name}"), &[]).await? {
                Some(t) => {
                    println!(
                        "Name: {}\nDescription: {}\nTemplate:\n{}",
                        name,
                        text(&t, "Description"),
                        text(&t, "Template")
                    );
                    Ok(())
                }
                None => bail!("no templated policy named {name:?}"),
            }
        }
        TemplatedPolicyCommand::Preview { name, vars, http } => {
            let t = templated_policy(name, vars)?;
            let body = t
                .get("TemplateVariables")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let p = call(
                http,
                Method::POST,
                &format!("acl/templated-policy/preview/{name}"),
                Some(&body),
            )
            .await?;
            println!("{}", text(&p, "Rules"));
            Ok(())
        }
    }
}

/// `mesh login -method M -bearer-token-file F -token-sink-file S`.
pub async fn login(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let bearer = std::fs::read_to_string(&args.bearer_token_file)
        .with_context(|| format!("reading {}", args.bearer_token_file.display()))?;
    let mut meta = serde_json::Map::new();
    for kv in &args.meta {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("-meta {kv:?}: key=value"))?;
        meta.insert(k.to_string(), v.into());
    }
    let body = json!({"AuthMethod": args.method, "BearerToken": bearer.trim(), "Meta": meta});
    let token = call(&args.http, Method::POST, "acl/login", Some(&body))
        .await
        .context("Error logging in")?;
    let secret = text(&token, "SecretID");
    std::fs::write(&args.token_sink_file, &secret)
        .with_context(|| format!("writing {}", args.token_sink_file.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `mesh logout`: ends the login token in use.
pub async fn logout(http: &HttpArgs) -> anyhow::Result<ExitCode> {
    call(http, Method::POST, "acl/logout", None)
        .await
        .context("Error destroying token")?;
    Ok(ExitCode::SUCCESS)
}
