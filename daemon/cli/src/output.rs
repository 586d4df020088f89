//! Shared flags and printing: `-http-addr`, `-token`, `-format`, aligned tables.

use clap::{Args, ValueEnum};
use mesh_client::Client;

/// How to reach the agent; every client command takes these.
#[derive(Debug, Clone, Default, Args)]
pub struct HttpArgs {
    /// Agent HTTP address [default: $MESH_HTTP_ADDR, $CONSUL_HTTP_ADDR or 127.0.0.1:8500; https:// with $CONSUL_HTTP_SSL=true]
    #[arg(long = "http-addr", value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// ACL token [default: $MESH_HTTP_TOKEN, $CONSUL_HTTP_TOKEN, or the file $CONSUL_HTTP_TOKEN_FILE names]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// CA certificates (PEM) to verify an https:// agent with [default: $MESH_CACERT or $CONSUL_CACERT]
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for an agent that verifies callers [default: $MESH_CLIENT_CERT or $CONSUL_CLIENT_CERT]
    #[arg(long = "client-cert", value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    /// The client certificate's key [default: $MESH_CLIENT_KEY or $CONSUL_CLIENT_KEY]
    #[arg(long = "client-key", value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
    /// Datacenter to ask [default: the agent's]
    #[arg(long, value_name = "DC")]
    pub datacenter: Option<String>,
    /// Let any server answer reads, possibly behind the leader (`?stale`)
    #[arg(long)]
    pub stale: bool,
}

impl HttpArgs {
    /// A client for the chosen agent.
    pub fn client(&self) -> anyhow::Result<Client> {
        let addr = self.http_addr.clone().unwrap_or_else(mesh_client::env_addr);
        let token = self.token.clone().or_else(mesh_client::env_token);
        let client = Client::new(&addr)?
            .with_token(token)
            .with_datacenter(self.datacenter.clone())
            .with_stale_reads(self.stale);
        let ca = self.ca_file.clone().or_else(mesh_client::env_ca_file);
        let cert = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => mesh_client::env_client_cert(),
        };
        if ca.is_none() && cert.is_none() {
            return Ok(client);
        }
        Ok(client.with_tls_files(
            ca.as_deref(),
            cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )?)
    }
}

/// Output for people (`table`) or scripts (`json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    #[default]
    #[value(alias = "pretty")]
    Table,
    /// JSON in the HTTP API's shape.
    Json,
}

/// Prints rows under a header with columns padded to line up.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(header, rows));
}

/// The text `print_table` prints.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec![
                "node-long".to_string(),
                "1".to_string(),
                "alive".to_string(),
            ],
            vec!["n".to_string(), "10.0.0.2".to_string(), "left".to_string()],
        ];
        assert_eq!(
            render_table(&["Node", "Address", "Status"], &rows),
            "Node       Address   Status\nnode-long  1         alive\nn          10.0.0.2  left\n"
        );
    }
}
