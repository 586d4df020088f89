//! The agent's TLS settings as Consul writes them: `tls { defaults {}
//! internal_rpc {} https {} grpc {} }` and the older top-level keys
//! (`verify_incoming`, `ca_file`, …), resolved into one [`TlsSurface`] per
//! listener kind.
//!
//! Precedence, as in Consul: a key in a surface's own block wins over the
//! same key in `tls.defaults`, which wins over the top-level key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::raw::RawConfig;
use crate::validate::Check;
use crate::ValidationError;

/// `tls { }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Settings every listener kind starts from.
    pub defaults: Option<RawTlsFiles>,
    /// Server RPC (Raft, forwarding) and client agents' calls to servers.
    pub internal_rpc: Option<RawTlsFiles>,
    /// The HTTPS API.
    pub https: Option<RawTlsFiles>,
    /// xDS over TLS (`ports.grpc_tls`).
    pub grpc: Option<RawTlsFiles>,
}

/// `auto_encrypt { }`: servers sign client agents' RPC certificates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAutoEncrypt {
    /// Servers: sign client agents' certificates with the Connect CA.
    pub allow_tls: Option<bool>,
    /// Client agents: get the RPC certificate from a server at start.
    pub tls: Option<bool>,
    /// Extra DNS names for the client's certificate.
    pub dns_san: Option<Vec<String>>,
    /// Extra IP addresses (accepted; mesh signs DNS names only).
    pub ip_san: Option<Vec<String>>,
}

/// The `auto_encrypt` settings in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoEncrypt {
    pub allow_tls: bool,
    pub tls: bool,
    pub dns_san: Vec<String>,
}

/// One TLS block: the files and the checks for one kind of listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawTlsFiles {
    /// PEM bundle of the CA(s) that sign the agents' certificates.
    pub ca_file: Option<String>,
    /// A directory of PEM CA certificates (added to `ca_file`'s).
    pub ca_path: Option<String>,
    /// The agent's certificate chain.
    pub cert_file: Option<String>,
    /// Its private key.
    pub key_file: Option<String>,
    /// Callers must present a certificate signed by the CA.
    pub verify_incoming: Option<bool>,
    /// Dial other agents over TLS and check their certificate.
    pub verify_outgoing: Option<bool>,
    /// Servers must present `server.<datacenter>.<domain>` (internal_rpc).
    pub verify_server_hostname: Option<bool>,
    /// `TLSv1_2` (default) or `TLSv1_3`.
    pub tls_min_version: Option<String>,
    /// TLS 1.2 suites allowed, comma-separated Go names.
    pub tls_cipher_suites: Option<String>,
}

/// The lowest TLS version an agent's listeners and dialers accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

/// The resolved TLS settings of one kind of listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSurface {
    /// Where these settings are configured, for errors (`tls.internal_rpc`).
    pub key: String,
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub verify_incoming: bool,
    pub verify_outgoing: bool,
    pub verify_server_hostname: bool,
    pub min_version: TlsVersion,
    /// Go names of the TLS 1.2 suites to offer; empty means rustls's safe defaults.
    pub cipher_suites: Vec<String>,
}

impl TlsSurface {
    /// Whether this surface has a certificate to serve with.
    pub fn has_certificate(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Whether any CA is configured to check peers against.
    pub fn has_ca(&self) -> bool {
        self.ca_file.is_some() || self.ca_path.is_some()
    }
}

/// The three TLS surfaces of an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server RPC port (Raft, forwarding) and the agent's dialing of it.
    pub internal_rpc: TlsSurface,
    /// The HTTPS API, and client agents' HTTP calls to servers.
    pub https: TlsSurface,
    /// The gRPC TLS port (`ports.grpc_tls`): xDS for Envoy over TLS.
    pub grpc: TlsSurface,
    /// `auto_encrypt { }`.
    pub auto_encrypt: AutoEncrypt,
}

impl TlsConfig {
    /// Whether the server RPC port speaks TLS.
    pub fn rpc_enabled(&self) -> bool {
        self.internal_rpc.has_certificate() || self.internal_rpc.verify_outgoing
    }
}

/// One surface's keys, each from the most specific place that sets it.
fn resolve(raw: &RawConfig, name: &str, own: Option<&RawTlsFiles>) -> RawTlsFiles {
    let defaults = raw.tls.as_ref().and_then(|t| t.defaults.clone());
    let defaults = defaults.unwrap_or_default();
    let own = own.cloned().unwrap_or_default();
    let pick = |own: Option<String>, def: Option<String>, old: &Option<String>| {
        own.or(def).or_else(|| old.clone())
    };
    let flag = |own: Option<bool>, def: Option<bool>, old: Option<bool>| own.or(def).or(old);
    RawTlsFiles {
        ca_file: pick(own.ca_file, defaults.ca_file, &raw.ca_file),
        ca_path: pick(own.ca_path, defaults.ca_path, &raw.ca_path),
        cert_file: pick(own.cert_file, defaults.cert_file, &raw.cert_file),
        key_file: pick(own.key_file, defaults.key_file, &raw.key_file),
        verify_incoming: flag(
            own.verify_incoming,
            defaults.verify_incoming,
            raw.verify_incoming,
        ),
        verify_outgoing: flag(
            own.verify_outgoing,
            defaults.verify_outgoing,
            raw.verify_outgoing,
        ),
        // Only meaningful for internal RPC; Consul reads it there or top-level.
        verify_server_hostname: if name == "internal_rpc" {
            flag(own.verify_server_hostname, None, raw.verify_server_hostname)
        } else {
            None
        },
        tls_min_version: pick(
            own.tls_min_version,
            defaults.tls_min_version,
            &raw.tls_min_version,
        ),
        tls_cipher_suites: pick(
            own.tls_cipher_suites,
            defaults.tls_cipher_suites,
            &raw.tls_cipher_suites,
        ),
    }
}

impl Check<'_> {
    pub(crate) fn tls_config(
        &self,
        https_port: bool,
        grpc_tls_port: bool,
    ) -> Result<TlsConfig, ValidationError> {
        let raw = self.raw;
        let blocks = raw.tls.clone().unwrap_or_default();
        let internal_rpc = self.surface(
            "internal_rpc",
            resolve(raw, "internal_rpc", blocks.internal_rpc.as_ref()),
        )?;
        let https = self.surface("https", resolve(raw, "https", blocks.https.as_ref()))?;
        if https_port && !https.has_certificate() {
            return Err(self.fail(
                "ports.https",
                "the HTTPS port needs tls { defaults { cert_file = \"...\" key_file = \"...\" } }",
            ));
        }
        let grpc = self.surface("grpc", resolve(raw, "grpc", blocks.grpc.as_ref()))?;
        if grpc_tls_port && !grpc.has_certificate() {
            return Err(self.fail(
                "ports.grpc_tls",
                "the gRPC TLS port needs tls { grpc { cert_file = \"...\" key_file = \"...\" } } (or tls.defaults)",
            ));
        }
        let auto_encrypt = self.auto_encrypt(&internal_rpc)?;
        Ok(TlsConfig {
            internal_rpc,
            https,
            grpc,
            auto_encrypt,
        })
    }

    fn auto_encrypt(&self, rpc: &TlsSurface) -> Result<AutoEncrypt, ValidationError> {
        let Some(raw) = &self.raw.auto_encrypt else {
            return Ok(AutoEncrypt::default());
        };
        let server = self.raw.server.unwrap_or(self.raw.dev);
        let settings = AutoEncrypt {
            allow_tls: raw.allow_tls.unwrap_or(false),
            tls: raw.tls.unwrap_or(false),
            dns_san: raw.dns_san.clone().unwrap_or_default(),
        };
        if settings.allow_tls && !server {
            return Err(self.fail(
                "auto_encrypt.allow_tls",
                "allow_tls is for servers; client agents set auto_encrypt { tls = true }",
            ));
        }
        if settings.tls && server {
            return Err(self.fail(
                "auto_encrypt.tls",
                "tls is for client agents; servers set auto_encrypt { allow_tls = true }",
            ));
        }
        if settings.allow_tls && !rpc.has_certificate() {
            return Err(self.fail(
                "auto_encrypt.allow_tls",
                "allow_tls needs the server's own certificate: set tls.defaults (or tls.internal_rpc) cert_file and key_file",
            ));
        }
        if settings.tls && !(rpc.has_ca() && rpc.verify_outgoing) {
            return Err(self.fail(
                "auto_encrypt.tls",
                "tls needs the servers' CA and verify_outgoing = true in tls.defaults (or tls.internal_rpc)",
            ));
        }
        // The server chooses a client's names (client.<dc>.<domain>, localhost).
        if !settings.dns_san.is_empty() || raw.ip_san.as_ref().is_some_and(|v| !v.is_empty()) {
            let key = if settings.dns_san.is_empty() {
                "auto_encrypt.ip_san"
            } else {
                "auto_encrypt.dns_san"
            };
            return Err(self.fail(
                key,
                "extra names in auto_encrypt certificates are not supported yet: the server names a client client.<dc>.<domain> and localhost",
            ));
        }
        Ok(settings)
    }

    /// The key a value of `surface` was set under, for errors.
    fn tls_key(&self, surface: &str, field: &str) -> String {
        for key in [
            format!("tls.{surface}.{field}"),
            format!("tls.defaults.{field}"),
        ] {
            if self.raw.origin(&key).is_some() {
                return key;
            }
        }
        field.to_string()
    }

    fn surface(&self, name: &str, files: RawTlsFiles) -> Result<TlsSurface, ValidationError> {
        let key = |field: &str| self.tls_key(name, field);
        if files.cert_file.is_some() != files.key_file.is_some() {
            let (set, missing) = if files.cert_file.is_some() {
                ("cert_file", "key_file")
            } else {
                ("key_file", "cert_file")
            };
            return Err(self.fail(&key(set), format!("{set} needs {missing} too")));
        }
        let verify_incoming = files.verify_incoming.unwrap_or(false);
        let verify_outgoing = files.verify_outgoing.unwrap_or(false);
        let verify_server_hostname = files.verify_server_hostname.unwrap_or(false);
        let has_ca = files.ca_file.is_some() || files.ca_path.is_some();
        if (verify_incoming || verify_outgoing || verify_server_hostname) && !has_ca {
            let field = if verify_incoming {
                "verify_incoming"
            } else if verify_outgoing {
                "verify_outgoing"
            } else {
                "verify_server_hostname"
            };
            return Err(self.fail(
                &key(field),
                format!("{field} needs a CA to verify against: set ca_file or ca_path"),
            ));
        }
        if verify_incoming && files.cert_file.is_none() {
            return Err(self.fail(
                &key("verify_incoming"),
                "verify_incoming needs the agent's own cert_file and key_file to serve TLS",
            ));
        }
        let min_version = match files.tls_min_version.as_deref() {
            None | Some("TLSv1_2") | Some("tls12") => TlsVersion::Tls12,
            Some("TLSv1_3") | Some("tls13") => TlsVersion::Tls13,
            Some(old @ ("TLSv1_0" | "TLSv1_1" | "tls10" | "tls11")) => {
                return Err(self.fail(
                    &key("tls_min_version"),
                    format!("{old} is not supported: TLS below 1.2 is refused; use \"TLSv1_2\" or \"TLSv1_3\""),
                ))
            }
            Some(other) => {
                return Err(self.fail(
                    &key("tls_min_version"),
                    format!("{other:?} is not a TLS version: use \"TLSv1_2\" or \"TLSv1_3\""),
                ))
            }
        };
        let cipher_suites: Vec<String> = files
            .tls_cipher_suites
            .as_deref()
            .map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if !cipher_suites.is_empty() && min_version == TlsVersion::Tls13 {
            return Err(self.fail(
                &key("tls_cipher_suites"),
                "tls_cipher_suites applies to TLS 1.2 only; with tls_min_version TLSv1_3 remove it",
            ));
        }
        Ok(TlsSurface {
            key: format!("tls.{name}"),
            ca_file: files.ca_file.map(Into::into),
            ca_path: files.ca_path.map(Into::into),
            cert_file: files.cert_file.map(Into::into),
            key_file: files.key_file.map(Into::into),
            verify_incoming,
            verify_outgoing,
            verify_server_hostname,
            min_version,
            cipher_suites,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{parse_str, Format, RuntimeConfig};

    fn build(hcl: &str) -> Result<RuntimeConfig, String> {
        let raw = parse_str(
            &format!("data_dir = \"/tmp/x\"\n{hcl}"),
            Format::Hcl,
            Path::new("agent.hcl"),
        )
        .map_err(|e| e.to_string())?;
        RuntimeConfig::build(raw).map_err(|e| e.to_string())
    }

    #[test]
    fn a_surface_block_wins_over_defaults_which_win_over_top_level_keys() {
        let c = build(
            r#"
ca_file = "/old/ca.pem"
verify_incoming = true
verify_server_hostname = true
tls {
  defaults {
    ca_file = "/new/ca.pem"
    cert_file = "/new/agent.pem"
    key_file = "/new/agent-key.pem"
  }
  https {
    verify_incoming = false
    tls_min_version = "TLSv1_3"
  }
}
"#,
        )
        .unwrap();
        let rpc = &c.tls.internal_rpc;
        assert_eq!(rpc.ca_file.as_deref(), Some(Path::new("/new/ca.pem")));
        assert!(
            rpc.verify_incoming,
            "top-level verify_incoming still applies"
        );
        assert!(rpc.verify_server_hostname);
        assert!(c.tls.rpc_enabled());
        let https = &c.tls.https;
        assert!(!https.verify_incoming, "the https block wins");
        assert!(!https.verify_server_hostname, "only for internal RPC");
        assert_eq!(https.min_version, super::TlsVersion::Tls13);
        assert_eq!(https.key, "tls.https");
    }

    #[test]
    fn bad_settings_say_which_key_and_where() {
        let err = build("tls {\n  defaults {\n    verify_incoming = true\n  }\n}\n").unwrap_err();
        assert!(
            err.contains("agent.hcl:4:5: tls.defaults.verify_incoming")
                && err.contains("needs a CA"),
            "{err}"
        );
        let err =
            build("tls {\n  internal_rpc {\n    cert_file = \"/a.pem\"\n  }\n}\n").unwrap_err();
        assert!(err.contains("cert_file needs key_file too"), "{err}");
        let err = build("tls_min_version = \"TLSv1_0\"").unwrap_err();
        assert!(err.contains("TLS below 1.2 is refused"), "{err}");
        let err = build("tls {\n  grpc {\n    cert_file = \"/a.pem\"\n  }\n}\n").unwrap_err();
        assert!(
            err.contains("tls.grpc.cert_file") && err.contains("needs key_file"),
            "{err}"
        );
        let err = build("ports {\n  grpc_tls = 8503\n}\n").unwrap_err();
        assert!(
            err.contains("ports.grpc_tls") && err.contains("needs tls"),
            "{err}"
        );
        assert!(!build("").unwrap().tls.rpc_enabled());
    }
}
