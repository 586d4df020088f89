//! `mesh kv get|put|delete|export|import`, with Consul's messages and export format.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use clap::{Args, Subcommand};
use mesh_client::{KvPair, QueryOptions};
use serde::{Deserialize, Serialize};

use crate::output::{print_json, Format, HttpArgs};

/// `mesh kv ...`
#[derive(Debug, Clone, Args)]
pub struct KvArgs {
    #[command(subcommand)]
    pub command: KvCommand,
}

/// Key/value commands.
#[derive(Debug, Clone, Subcommand)]
pub enum KvCommand {
    /// Print a value, or the keys/pairs under a prefix
    Get {
        /// Every pair under KEY, as `key:value`
        #[arg(long)]
        recurse: bool,
        /// Only key names under KEY, folded at -separator
        #[arg(long)]
        keys: bool,
        /// Where -keys folds names (empty: list every key)
        #[arg(long, default_value = "/")]
        separator: String,
        /// Show flags, indexes and session with each value
        #[arg(long)]
        detailed: bool,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Key or prefix
        #[arg(default_value = "")]
        key: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Write a value: VALUE, @file, or - for stdin (empty if left out)
    Put {
        /// Opaque number stored with the value
        #[arg(long, value_name = "N")]
        flags: Option<u64>,
        /// Write only if the key's ModifyIndex is -modify-index (0: only if absent)
        #[arg(long)]
        cas: bool,
        /// ModifyIndex expected by -cas
        #[arg(long, value_name = "N")]
        modify_index: Option<u64>,
        /// Key to write
        key: String,
        /// Value, @file or -
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Delete a key, or every key under a prefix with -recurse
    Delete {
        /// Delete every key starting with KEY
        #[arg(long)]
        recurse: bool,
        /// Delete only if the key's ModifyIndex is -modify-index
        #[arg(long)]
        cas: bool,
        /// ModifyIndex expected by -cas
        #[arg(long, value_name = "N")]
        modify_index: Option<u64>,
        /// Key or prefix
        #[arg(default_value = "")]
        key: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Print every pair under PREFIX as JSON for `mesh kv import`
    Export {
        /// Prefix to export (everything if left out)
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Write pairs from `mesh kv export` JSON: @file, - for stdin, or the JSON itself
    Import {
        /// @file, - or JSON
        #[arg(default_value = "-", allow_hyphen_values = true)]
        data: String,
        #[command(flatten)]
        http: HttpArgs,
    },
}

/// One pair in Consul's `kv export` format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedPair {
    pub key: String,
    pub flags: u64,
    /// Base64 of the value.
    pub value: String,
}

/// Runs a kv command.
pub async fn run(args: &KvArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        KvCommand::Get {
            recurse,
            keys,
            separator,
            detailed,
            format,
            key,
            http,
        } => {
            let client = http.client()?;
            let opts = QueryOptions::default();
            if *keys {
                let sep = (!separator.is_empty()).then_some(separator.as_str());
                let (keys, _) = client.kv_keys(key, sep, &opts).await?;
                match format {
                    Format::Json => print_json(&keys)?,
                    Format::Table => keys.iter().for_each(|k| println!("{k}")),
                }
                return Ok(ExitCode::SUCCESS);
            }
            if *recurse {
                let (pairs, _) = client.kv_list(key, &opts).await?;
                print_pairs(&pairs, *detailed, *format, true)?;
                return Ok(ExitCode::SUCCESS);
            }
            if key.is_empty() {
                bail!("Missing KEY argument");
            }
            match client.kv_get(key, &opts).await? {
                (Some(pair), _) => {
                    print_pairs(&[pair], *detailed, *format, false)?;
                    Ok(ExitCode::SUCCESS)
                }
                (None, _) => {
                    eprintln!("Error! No key exists at: {key}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        KvCommand::Put {
            flags,
            cas,
            modify_index,
            key,
            value,
            http,
        } => {
            check_key(key)?;
            let cas = cas_index(*cas, *modify_index)?;
            let data = read_value(value.as_deref())?;
            if http.client()?.kv_put(key, data, *flags, cas).await? {
                println!("Success! Data written to: {key}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("Error! Did not write to {key}: CAS failed");
                Ok(ExitCode::FAILURE)
            }
        }
        KvCommand::Delete {
            recurse,
            cas,
            modify_index,
            key,
            http,
        } => {
            if *recurse && *cas {
                bail!("Cannot specify both -cas and -recurse");
            }
            if key.is_empty() && !recurse {
                bail!("Missing KEY argument (use -recurse to delete everything under a prefix)");
            }
            let cas = cas_index(*cas, *modify_index)?;
            if http.client()?.kv_delete(key, *recurse, cas).await? {
                if *recurse {
                    println!("Success! Deleted keys with prefix: {key}");
                } else {
                    println!("Success! Deleted key: {key}");
                }
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("Error! Did not delete key {key}: CAS failed");
                Ok(ExitCode::FAILURE)
            }
        }
        KvCommand::Export { prefix, http } => {
            let (pairs, _) = http
                .client()?
                .kv_list(prefix, &QueryOptions::default())
                .await?;
            print_json(&export(&pairs))?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Import { data, http } => {
            let text = String::from_utf8(read_value(Some(data))?)
                .context("import data is not UTF-8 JSON")?;
            let client = http.client()?;
            for (key, flags, value) in parse_import(&text)? {
                client
                    .kv_put(&key, value, Some(flags), None)
                    .await
                    .with_context(|| format!("Failed writing data for key {key}"))?;
                println!("Imported: {key}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty() {
        bail!("Missing KEY argument");
    }
    if key.starts_with('/') {
        bail!("Invalid key name {key:?}: keys must not begin with '/'");
    }
    Ok(())
}

/// `-cas` needs `-modify-index`; `-modify-index` alone is ignored, as in Consul.
fn cas_index(cas: bool, modify_index: Option<u64>) -> anyhow::Result<Option<u64>> {
    match (cas, modify_index) {
        (true, Some(index)) => Ok(Some(index)),
        (true, None) => bail!("Must specify -modify-index with -cas"),
        (false, _) => Ok(None),
    }
}

/// VALUE as given, `@file` as the file's bytes, `-` as stdin; nothing → empty.
fn read_value(arg: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match arg {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading stdin")?;
            Ok(buf)
        }
        Some(arg) => match arg.strip_prefix('@') {
            Some(path) => std::fs::read(path).with_context(|| format!("reading {path}")),
            None => Ok(arg.as_bytes().to_vec()),
        },
    }
}

fn print_pairs(
    pairs: &[KvPair],
    detailed: bool,
    format: Format,
    with_keys: bool,
) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json(&pairs);
    }
    let mut out = std::io::stdout().lock();
    for (i, pair) in pairs.iter().enumerate() {
        let value = pair.value.as_deref().unwrap_or_default();
        if detailed {
            if i > 0 {
                writeln!(out)?;
            }
            write!(out, "{}", detailed_text(pair))?;
        } else if with_keys {
            write!(out, "{}:", pair.key)?;
            out.write_all(value)?;
            writeln!(out)?;
        } else {
            out.write_all(value)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Consul's `-detailed` layout: one `Field  value` line each, alphabetical.
fn detailed_text(pair: &KvPair) -> String {
    let value = String::from_utf8_lossy(pair.value.as_deref().unwrap_or_default()).to_string();
    let rows = [
        ("CreateIndex", pair.create_index.to_string()),
        ("Flags", pair.flags.to_string()),
        ("Key", pair.key.clone()),
        ("LockIndex", pair.lock_index.to_string()),
        ("ModifyIndex", pair.modify_index.to_string()),
        (
            "Session",
            pair.session.clone().unwrap_or_else(|| "-".into()),
        ),
        ("Value", value),
    ];
    rows.iter().map(|(k, v)| format!("{k:<17}{v}\n")).collect()
}

fn export(pairs: &[KvPair]) -> Vec<ExportedPair> {
    pairs
        .iter()
        .map(|p| ExportedPair {
            key: p.key.clone(),
            flags: p.flags,
            value: base64::engine::general_purpose::STANDARD
                .encode(p.value.as_deref().unwrap_or_default()),
        })
        .collect()
}

/// Export JSON → (key, flags, decoded value).
fn parse_import(text: &str) -> anyhow::Result<Vec<(String, u64, Vec<u8>)>> {
    let entries: Vec<ExportedPair> = serde_json::from_str(text)
        .context("import data must be the JSON array `mesh kv export` prints")?;
    entries
        .into_iter()
        .map(|e| {
            let value = base64::engine::general_purpose::STANDARD
                .decode(&e.value)
                .with_context(|| format!("value of {} is not base64", e.key))?;
            Ok((e.key, e.flags, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, value: &[u8], flags: u64) -> KvPair {
        KvPair {
            key: key.into(),
            value: Some(value.to_vec()),
            flags,
            create_index: 5,
            modify_index: 6,
            ..Default::default()
        }
    }

    #[test]
    fn export_then_import_round_trips() {
        let pairs = [pair("a/b", b"hello", 7), pair("a/c", b"\x00\xff", 0)];
        let json = serde_json::to_string(&export(&pairs)).unwrap();
        assert!(
            json.contains(r#"{"key":"a/b","flags":7,"value":"aGVsbG8="}"#),
            "{json}"
        );
        let back = parse_import(&json).unwrap();
        assert_eq!(back[0], ("a/b".to_string(), 7, b"hello".to_vec()));
        assert_eq!(back[1].2, b"\x00\xff");
    }

    #[test]
    fn import_rejects_other_json() {
        assert!(parse_import(r#"{"key":"a"}"#).is_err());
        assert!(parse_import(r#"[{"key":"a","flags":0,"value":"!!"}]"#).is_err());
    }

    #[test]
    fn cas_needs_modify_index() {
        assert!(cas_index(true, None).is_err());
        assert_eq!(cas_index(true, Some(0)).unwrap(), Some(0));
        assert_eq!(cas_index(false, Some(3)).unwrap(), None);
    }

    #[test]
    fn values_from_args_and_files() {
        assert_eq!(read_value(None).unwrap(), b"");
        assert_eq!(read_value(Some("plain")).unwrap(), b"plain");
        let path = std::env::temp_dir().join(format!("mesh-kv-{}", std::process::id()));
        std::fs::write(&path, b"from file").unwrap();
        let arg = format!("@{}", path.display());
        assert_eq!(read_value(Some(&arg)).unwrap(), b"from file");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn detailed_layout() {
        let text = detailed_text(&pair("k", b"v", 2));
        assert_eq!(
            text,
            "CreateIndex      5\nFlags            2\nKey              k\nLockIndex        0\n\
             ModifyIndex      6\nSession          -\nValue            v\n"
        );
    }
}
