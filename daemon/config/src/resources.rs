//! Resource declarations in config files (`/etc/mesh.d`): services,
//! intentions, config entries and the CA block, each with the file and
//! position it came from. Files are read one by one (not merged) because
//! every object is owned by the file that declares it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{ConfigError, Error, Pos};
use crate::load::Format;
use crate::raw::RawConfig;
use crate::spans::Spans;

/// What a declaration declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceKind {
    /// `service { }` / `services = [...]`: registered with the local agent.
    Service,
    /// `intention "src" "dst" { }`.
    Intention,
    /// `config_entry { kind = ... }` or `config_entries { bootstrap = [...] }`.
    ConfigEntry,
    /// `ca { provider = ..., config { } }`.
    Ca,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Service => "service",
            ResourceKind::Intention => "intention",
            ResourceKind::ConfigEntry => "config_entry",
            ResourceKind::Ca => "ca",
        })
    }
}

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// The file.
    pub file: PathBuf,
    /// Where the declaration starts.
    pub pos: Pos,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file.display(),
            self.pos.line,
            self.pos.col
        )
    }
}

impl Loc {
    /// An error at this place.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.file, self.pos, message)
    }
}

/// One declared object: its JSON body (keys as written) and where it is.
/// Intentions carry `SourceName`/`DestinationName` from their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Decl {
    /// What it declares.
    pub kind: ResourceKind,
    /// The body.
    pub value: Value,
    /// Where.
    pub loc: Loc,
}

/// Every declaration in `files`, in file order. The first unreadable or
/// malformed file is the error: a reload applies all files or none.
pub fn load_resources(files: &[PathBuf]) -> Result<Vec<Decl>, Error> {
    Ok(load_all(files)?.1)
}

/// Agent settings (merged in file order) and every declaration, each file
/// read and parsed once: what a reload needs.
pub fn load_all(files: &[PathBuf]) -> Result<(RawConfig, Vec<Decl>), Error> {
    let mut merged = RawConfig::default();
    let mut out = Vec::new();
    for file in files {
        let Some(format) = Format::from_path(file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        let (mut raw, decls) = parse_file(&text, format, file)?;
        // Declarations are owned per file and carried in `decls`; merging
        // them into the agent settings too would cost O(files²).
        raw.service = None;
        raw.services = None;
        raw.intention = None;
        raw.config_entry = None;
        raw.ca = None;
        merged = merged.merge(raw);
        out.extend(decls);
    }
    Ok((merged, out))
}

/// The declarations in one file's text. The whole file is also checked as
/// agent config, so an unknown key is reported even in a resource-only file.
pub fn parse_resources(text: &str, format: Format, file: &Path) -> Result<Vec<Decl>, ConfigError> {
    Ok(parse_file(text, format, file)?.1)
}

fn parse_file(
    text: &str,
    format: Format,
    file: &Path,
) -> Result<(RawConfig, Vec<Decl>), ConfigError> {
    let (value, spans) = crate::load::parse_value(text, format, file)?;
    let raw = crate::load::raw_from_value(value.clone(), &spans, file)?;
    let Value::Object(top) = value else {
        return Ok((raw, Vec::new()));
    };
    let mut found = Found {
        file,
        spans: &spans,
        out: Vec::new(),
    };
    for (key, v) in &top {
        match key.as_str() {
            "service" | "services" => found.one_or_many(ResourceKind::Service, key, v)?,
            "config_entry" => found.one_or_many(ResourceKind::ConfigEntry, key, v)?,
            "config_entries" => {
                if let Some(b) = v.get("bootstrap") {
                    found.one_or_many(ResourceKind::ConfigEntry, "config_entries.bootstrap", b)?;
                }
            }
            "ca" => found.push(ResourceKind::Ca, key, v.clone())?,
            "intention" => found.intentions(v)?,
            _ => {}
        }
    }
    Ok((raw, found.out))
}

struct Found<'a> {
    file: &'a Path,
    spans: &'a Spans,
    out: Vec<Decl>,
}

impl Found<'_> {
    fn loc(&self, path: &str) -> Loc {
        Loc {
            file: self.file.to_path_buf(),
            pos: self
                .spans
                .nearest(path)
                .map_or(Pos { line: 1, col: 1 }, |s| s.key),
        }
    }

    /// Unknown keys in a block are errors at the key, with a suggestion.
    fn check_keys(&self, path: &str, value: &Value, known: &[&str]) -> Result<(), ConfigError> {
        let Some(map) = value.as_object() else {
            return Ok(());
        };
        for key in map.keys() {
            if known.iter().any(|k| mesh_wire::same_key(k, key)) {
                continue;
            }
            let loc = self.loc(&format!("{path}.{key}"));
            let names: Vec<String> = known.iter().map(|k| k.to_string()).collect();
            let msg = match crate::load::closest(key, &names) {
                Some(best) => format!("unknown key `{key}` in `{path}`, did you mean `{best}`?"),
                None => format!(
                    "unknown key `{key}` in `{path}`; known keys: {}",
                    known.join(", ")
                ),
            };
            return Err(loc.error(msg));
        }
        Ok(())
    }

    fn push(&mut self, kind: ResourceKind, path: &str, value: Value) -> Result<(), ConfigError> {
        let loc = self.loc(path);
        if !value.is_object() {
            return Err(loc.error(format!("`{path}` must be a block (object), found {value}")));
        }
        match kind {
            ResourceKind::Service => self.check_keys(path, &value, SERVICE_KEYS)?,
            ResourceKind::Ca => self.check_keys(
                path,
                &value,
                &["provider", "config", "force_without_cross_signing"],
            )?,
            _ => {}
        }
        self.out.push(Decl { kind, value, loc });
        Ok(())
    }

    fn one_or_many(
        &mut self,
        kind: ResourceKind,
        path: &str,
        v: &Value,
    ) -> Result<(), ConfigError> {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.push(kind, &format!("{path}[{i}]"), item.clone())?;
                }
                Ok(())
            }
            other => self.push(kind, path, other.clone()),
        }
    }

    /// `intention "src" "dst" { }` arrives as `{"src": {"dst": {...}}}`.
    fn intentions(&mut self, v: &Value) -> Result<(), ConfigError> {
        let outer = self.loc("intention");
        let Value::Object(sources) = v else {
            return Err(outer.error("`intention` blocks take two labels: intention \"source\" \"destination\" { action = \"allow\" }"));
        };
        for (src, dsts) in sources {
            let Value::Object(dsts) = dsts else {
                return Err(self.loc(&format!("intention.{src}")).error(
                    "`intention` blocks take two labels: intention \"source\" \"destination\" { }",
                ));
            };
            for (dst, body) in dsts {
                let path = format!("intention.{src}.{dst}");
                let loc = self.loc(&path);
                let mut body: Map<String, Value> = match body {
                    Value::Object(m) => m.clone(),
                    Value::Array(_) => {
                        return Err(loc.error(format!(
                            "intention {src:?} {dst:?} is declared more than once in this file"
                        )))
                    }
                    _ => {
                        return Err(loc.error(format!("intention {src:?} {dst:?} must be a block; intention takes two labels: intention \"source\" \"destination\" {{ }}")))
                    }
                };
                self.check_keys(&path, &Value::Object(body.clone()), INTENTION_KEYS)?;
                body.insert("SourceName".into(), src.clone().into());
                body.insert("DestinationName".into(), dst.clone().into());
                self.out.push(Decl {
                    kind: ResourceKind::Intention,
                    value: Value::Object(body),
                    loc,
                });
            }
        }
        Ok(())
    }
}

/// Keys of a `service` block (Consul's service definition).
const SERVICE_KEYS: &[&str] = &[
    "id",
    "name",
    "tags",
    "address",
    "port",
    "meta",
    "kind",
    "weights",
    "proxy",
    "connect",
    "enable_tag_override",
    "check",
    "checks",
    "token",
    "tagged_addresses",
    "socket_path",
    "namespace",
    "partition",
    "locality",
];

/// Keys of an `intention` block.
const INTENTION_KEYS: &[&str] = &["action", "description", "meta", "permissions"];

/// Acronyms Consul spells in capitals inside CamelCase keys.
const ACRONYMS: &[(&str, &str)] = &[
    ("http", "HTTP"),
    ("tls", "TLS"),
    ("sni", "SNI"),
    ("ca", "CA"),
    ("id", "ID"),
    ("ttl", "TTL"),
    ("grpc", "GRPC"),
    ("dns", "DNS"),
    ("ip", "IP"),
    ("url", "URL"),
    ("acl", "ACL"),
];

/// Keys whose values are user maps, left as written.
const USER_MAPS: &[&str] = &[
    "meta", "Meta", "config", "Config", "add", "Add", "set", "Set",
];

/// Maps keyed by the user (subset names) whose values are ours again.
const KEYED_MAPS: &[&str] = &["subsets", "Subsets", "failover", "Failover"];

/// `snake_case` keys (as HCL users write them) in Consul's CamelCase, so a
/// config entry from a file is stored as the API would store it.
pub fn camel_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        v if USER_MAPS.contains(&k.as_str()) => v,
                        Value::Object(m) if KEYED_MAPS.contains(&k.as_str()) => {
                            Value::Object(m.into_iter().map(|(k, v)| (k, camel_keys(v))).collect())
                        }
                        v => camel_keys(v),
                    };
                    (camel(&k), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

fn camel(key: &str) -> String {
    key.split('_')
        .filter(|p| !p.is_empty())
        .map(|part| {
            if let Some((_, up)) = ACRONYMS.iter().find(|(a, _)| *a == part) {
                return up.to_string();
            }
            let mut chars = part.chars();
            match chars.next() {
                Some(c) => c.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Decl>, ConfigError> {
        parse_resources(text, Format::Hcl, Path::new("/etc/mesh.d/a.hcl"))
    }

    #[test]
    fn declarations_with_positions() {
        let text = r#"
log_level = "info"

service {
  name = "web"
  port = 8080
  connect {
    sidecar_service {
      proxy {
        upstreams = [{ destination_name = "api", local_bind_port = 9191 }]
      }
    }
  }
}

intention "web" "api" {
  action = "allow"
}
intention "*" "api" { action = "deny" }

config_entry {
  kind = "service-defaults"
  name = "api"
  protocol = "http"
}

ca {
  provider = "consul"
  config { leaf_cert_ttl = "24h" }
}
"#;
        let decls = parse(text).unwrap();
        let kinds: Vec<_> = decls.iter().map(|d| (d.kind, d.loc.pos.line)).collect();
        assert!(kinds.contains(&(ResourceKind::Service, 4)), "{kinds:?}");
        assert!(kinds.contains(&(ResourceKind::Intention, 16)), "{kinds:?}");
        assert!(kinds.contains(&(ResourceKind::Intention, 19)), "{kinds:?}");
        assert!(
            kinds.contains(&(ResourceKind::ConfigEntry, 21)),
            "{kinds:?}"
        );
        assert!(kinds.contains(&(ResourceKind::Ca, 27)), "{kinds:?}");
        let web_api = decls
            .iter()
            .find(|d| d.kind == ResourceKind::Intention && d.value["SourceName"] == "web")
            .unwrap();
        assert_eq!(web_api.value["DestinationName"], "api");
        assert_eq!(web_api.loc.to_string(), "/etc/mesh.d/a.hcl:16:1");
    }

    #[test]
    fn bad_files_say_where() {
        let e = parse("servise {\n  name = \"web\"\n}\n").unwrap_err();
        assert_eq!((e.line, e.col), (1, 1));
        assert!(e.message.contains("did you mean `service`"), "{e}");
        let e = parse("intention \"a\" \"b\" { action = \"allow\" }\nintention \"a\" \"b\" { action = \"deny\" }\n").unwrap_err();
        assert!(e.message.contains("more than once"), "{e}");
        let e = parse("intention \"a\" { action = \"allow\" }\n").unwrap_err();
        assert!(e.message.contains("two labels"), "{e}");
        let e = parse("intention \"a\" \"b\" {\n  acton = \"allow\"\n}\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 3), "{e}");
        assert!(e.message.contains("did you mean `action`"), "{e}");
        let e = parse("service {\n  name = \"web\"\n  prot = 80\n}\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 3), "{e}");
        assert!(e.message.contains("did you mean `port`"), "{e}");
        let e = parse("service {\n  name = \"web\"\n  port = \n}\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn json_files_work_too() {
        let decls = parse_resources(
            r#"{"service": [{"name": "a"}, {"name": "b"}], "intention": {"a": {"b": {"action": "deny"}}}}"#,
            Format::Json,
            Path::new("x.json"),
        )
        .unwrap();
        assert_eq!(decls.len(), 3);
    }

    #[test]
    fn camel_case_for_config_entries() {
        let v = camel_keys(serde_json::json!({
            "kind": "terminating-gateway", "name": "gw",
            "services": [{"name": "db", "ca_file": "/x", "sni": "db.local"}],
            "meta": {"team_name": "x"}
        }));
        assert_eq!(v["Services"][0]["CAFile"], "/x");
        assert_eq!(v["Services"][0]["SNI"], "db.local");
        assert_eq!(v["Meta"]["team_name"], "x");
    }
}
