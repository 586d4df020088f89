//! The gossip encryption in force, which changes at run time: keys are
//! installed, made primary and removed across the pool (`mesh keyring`),
//! and `encrypt_verify_incoming`/`encrypt_verify_outgoing` stage a switch
//! from plaintext to encrypted gossip without a restart. The keys persist
//! in a keyring file (a JSON list of base64 keys, primary first).

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::{decode_base64, GossipError, Keyring};

/// What encrypts and opens gossip now.
#[derive(Clone, Debug)]
pub struct Encryption {
    pub keyring: Option<Keyring>,
    /// Refuse plaintext from others (Consul's `encrypt_verify_incoming`).
    pub verify_incoming: bool,
    /// Encrypt what we send (Consul's `encrypt_verify_outgoing`).
    pub verify_outgoing: bool,
}

impl Encryption {
    /// Fully on with `keyring`, or plaintext without one.
    pub fn new(keyring: Option<Keyring>) -> Encryption {
        Encryption {
            keyring,
            verify_incoming: true,
            verify_outgoing: true,
        }
    }

    /// The keyring to seal outgoing messages with, if they are sealed.
    pub(crate) fn sealing(&self) -> Option<&Keyring> {
        self.keyring.as_ref().filter(|_| self.verify_outgoing)
    }

    /// Whether plaintext from others is let in.
    pub(crate) fn accepts_plaintext(&self) -> bool {
        self.keyring.is_none() || !self.verify_incoming
    }
}

/// A keyring change or question, spread to every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    List,
    Install(String),
    Use(String),
    Remove(String),
}

/// One member's answer to a [`KeyOp`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAnswer {
    /// Installed keys, base64, primary first.
    pub keys: Vec<String>,
    /// Why the member could not do it.
    pub error: Option<String>,
}

/// A member's name and its answer (or why it gave none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAnswer {
    pub node: String,
    pub answer: KeyAnswer,
}

pub(crate) fn encode_key(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Applies `op` to `current`; the new keyring (when it changed) and the answer.
pub(crate) fn apply(current: Option<&Keyring>, op: &KeyOp) -> (Option<Keyring>, KeyAnswer) {
    let listed = |ring: &Keyring| ring.keys().map(encode_key).collect::<Vec<_>>();
    let Some(ring) = current else {
        let answer = KeyAnswer {
            error: Some("gossip encryption is not enabled on this agent (no encrypt key)".into()),
            ..Default::default()
        };
        return (None, answer);
    };
    let mut next = ring.clone();
    let result = match op {
        KeyOp::List => {
            return (
                None,
                KeyAnswer {
                    keys: listed(ring),
                    error: None,
                },
            )
        }
        KeyOp::Install(k) => decode_base64(k).and_then(|raw| next.add_key(raw)),
        KeyOp::Use(k) => decode_base64(k).and_then(|raw| next.use_key(&raw)),
        KeyOp::Remove(k) => decode_base64(k).and_then(|raw| next.remove_key(&raw)),
    };
    match result {
        Ok(()) => {
            let keys = listed(&next);
            (Some(next), KeyAnswer { keys, error: None })
        }
        Err(e) => (
            None,
            KeyAnswer {
                keys: listed(ring),
                error: Some(e.to_string()),
            },
        ),
    }
}

/// Reads a keyring file.
pub fn load_keyring_file(path: &Path) -> Result<Keyring, GossipError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| GossipError::Config(format!("{}: cannot read it: {e}", path.display())))?;
    let keys: Vec<String> = serde_json::from_str(&text).map_err(|e| {
        GossipError::Config(format!(
            "{}: not a JSON list of base64 keys: {e}",
            path.display()
        ))
    })?;
    let mut keys = keys.iter();
    let primary = keys
        .next()
        .ok_or_else(|| GossipError::Config(format!("{}: holds no key", path.display())))?;
    let mut ring = Keyring::from_base64(primary)?;
    for key in keys {
        ring.add_key(decode_base64(key)?)?;
    }
    Ok(ring)
}

/// Writes `ring` to `path` (mode 0600), replacing it whole.
pub(crate) fn save_keyring_file(path: &Path, ring: &Keyring) -> std::io::Result<()> {
    let keys: Vec<String> = ring.keys().map(encode_key).collect();
    let text = serde_json::to_string(&keys).expect("a list of strings encodes");
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Says a key-mismatch warning at most once per `WARN_EVERY`, with how many
/// were held back, so a stranger with the wrong key cannot flood the log.
pub(crate) struct WarnLimit {
    state: Mutex<(Option<Instant>, u64)>,
}

const WARN_EVERY: Duration = Duration::from_secs(10);

impl WarnLimit {
    pub(crate) fn new() -> WarnLimit {
        WarnLimit {
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back)` when a warning is due now.
    pub(crate) fn due(&self) -> Option<u64> {
        let mut state = self.state.lock();
        let now = Instant::now();
        if state.0.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            let held = state.1;
            *state = (Some(now), 0);
            Some(held)
        } else {
            state.1 += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_change_a_copy_and_refuse_what_consul_refuses() {
        let k1 = encode_key(&[1; 32]);
        let k2 = encode_key(&[2; 32]);
        let ring = Keyring::from_base64(&k1).unwrap();
        let (next, answer) = apply(Some(&ring), &KeyOp::Install(k2.clone()));
        let next = next.unwrap();
        assert_eq!(answer.keys, vec![k1.clone(), k2.clone()]);
        let (_, answer) = apply(Some(&next), &KeyOp::Remove(k1.clone()));
        assert!(answer.error.unwrap().contains("primary"));
        let (used, answer) = apply(Some(&next), &KeyOp::Use(k2.clone()));
        assert_eq!(answer.keys, vec![k2.clone(), k1.clone()]);
        let (removed, answer) = apply(used.as_ref(), &KeyOp::Remove(k1.clone()));
        assert_eq!(answer.keys, vec![k2.clone()]);
        assert!(removed.is_some());
        let (none, answer) = apply(Some(&ring), &KeyOp::Use(k2));
        assert!(none.is_none() && answer.error.unwrap().contains("not installed"));
        let (_, answer) = apply(None, &KeyOp::List);
        assert!(answer.error.unwrap().contains("not enabled"));
        let (_, answer) = apply(Some(&ring), &KeyOp::Install("short".into()));
        assert!(answer.error.is_some());
    }

    #[test]
    fn the_file_round_trips_primary_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let mut ring = Keyring::new(vec![1; 32]).unwrap();
        ring.add_key(vec![2; 16]).unwrap();
        ring.use_key(&[2; 16]).unwrap();
        save_keyring_file(&path, &ring).unwrap();
        let loaded = load_keyring_file(&path).unwrap();
        assert_eq!(loaded.primary_key(), &[2; 16]);
        assert_eq!(loaded.keys().count(), 2);
        std::fs::write(&path, "[]").unwrap();
        assert!(load_keyring_file(&path).is_err());
    }
}
