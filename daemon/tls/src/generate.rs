//! What `mesh tls ca create` and `mesh tls cert create` write, named and
//! shaped as `consul tls` does: `<domain>-agent-ca.pem` and its key; server
//! certificates for `server.<dc>.<domain>`, `localhost` and `127.0.0.1`;
//! client and CLI certificates likewise. Keys are ECDSA P-256, written
//! with mode 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// Which kind of agent certificate to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    Server,
    Client,
    Cli,
}

impl CertKind {
    fn word(self) -> &'static str {
        match self {
            CertKind::Server => "server",
            CertKind::Client => "client",
            CertKind::Cli => "cli",
        }
    }
}

/// A certificate (or CA) and its key, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The CA's file names in `dir` for `domain`.
pub fn ca_files(dir: &Path, domain: &str) -> Written {
    let domain = domain.trim_end_matches('.');
    Written {
        cert: dir.join(format!("{domain}-agent-ca.pem")),
        key: dir.join(format!("{domain}-agent-ca-key.pem")),
    }
}

/// Creates a CA valid for `days`; refuses to overwrite an existing one.
pub fn create_ca(dir: &Path, domain: &str, days: u32) -> Result<Written, String> {
    let files = ca_files(dir, domain);
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    let serial: u64 = random_serial();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Mesh Agent CA {serial}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    params.serial_number = Some(SerialNumber::from(serial));
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write_new(&files.cert, cert.pem().as_bytes(), false)?;
    write_new(&files.key, key.serialize_pem().as_bytes(), true)?;
    Ok(files)
}

/// What to put in an agent certificate.
#[derive(Debug, Clone)]
pub struct CertRequest {
    pub kind: CertKind,
    pub datacenter: String,
    pub domain: String,
    pub days: u32,
    pub additional_dns: Vec<String>,
    pub additional_ips: Vec<IpAddr>,
    /// `-node`: also `<node>.server.<dc>.<domain>` (servers only).
    pub node: Option<String>,
}

/// Signs a certificate with the CA at `ca_cert`/`ca_key` and writes it to
/// `dir` under the first free `<dc>-<kind>-<domain>-<n>.pem`.
pub fn create_cert(
    dir: &Path,
    ca_cert: &Path,
    ca_key: &Path,
    request: &CertRequest,
) -> Result<Written, String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read it: {e}", p.display()))
    };
    let ca_key_pair = KeyPair::from_pem(&read(ca_key)?)
        .map_err(|e| format!("{}: not a private key: {e}", ca_key.display()))?;
    let issuer = Issuer::from_ca_cert_pem(&read(ca_cert)?, ca_key_pair)
        .map_err(|e| format!("{}: not a CA certificate: {e}", ca_cert.display()))?;
    let domain = request.domain.trim_end_matches('.');
    let dc = &request.datacenter;
    let kind = request.kind.word();
    let mut names = vec![format!("{kind}.{dc}.{domain}")];
    if let (CertKind::Server, Some(node)) = (request.kind, &request.node) {
        names.push(format!("{node}.server.{dc}.{domain}"));
    }
    if request.kind != CertKind::Cli {
        names.push("localhost".into());
    }
    names.extend(request.additional_dns.iter().cloned());
    let mut sans = names.clone();
    if request.kind != CertKind::Cli {
        sans.push("127.0.0.1".into());
    }
    sans.extend(request.additional_ips.iter().map(|ip| ip.to_string()));
    let mut params = CertificateParams::new(sans).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match request.kind {
        CertKind::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
        _ => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from(random_serial()));
    validity(&mut params, request.days);
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    for n in 0..10_000 {
        let files = Written {
            cert: dir.join(format!("{dc}-{kind}-{domain}-{n}.pem")),
            key: dir.join(format!("{dc}-{kind}-{domain}-{n}-key.pem")),
        };
        if files.cert.exists() || files.key.exists() {
            continue;
        }
        write_new(&files.cert, cert.pem().as_bytes(), false)?;
        write_new(&files.key, key.serialize_pem().as_bytes(), true)?;
        return Ok(files);
    }
    Err(format!(
        "{}: no free file name for another {kind} certificate",
        dir.display()
    ))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // A minute back, for clocks a little behind.
    params.not_before = now - Duration::minutes(1);
    params.not_after = now + Duration::days(i64::from(days));
}

fn random_serial() -> u64 {
    // Positive and unique enough: 63 random bits.
    rand::random::<u64>() >> 1
}

fn write_new(path: &Path, data: &[u8], secret: bool) -> Result<(), String> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: cannot create it: {e}", path.display()))?;
    file.write_all(data)
        .map_err(|e| format!("{}: cannot write it: {e}", path.display()))
}
