//! AES-GCM keyring: encrypt with the primary key, decrypt with any installed key.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{aes::Aes192, Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use base64::Engine as _;
use rand::RngCore as _;

use crate::GossipError;

/// Version byte in front of every sealed message, so the format can change later.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A random 32-byte key, base64-encoded (what `mesh keygen` prints).
pub fn generate_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// The gossip encryption keys of a node; the first one is the primary.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

#[derive(Clone)]
struct Key {
    raw: Vec<u8>,
    cipher: Cipher,
}

#[derive(Clone)]
enum Cipher {
    Aes128(Aes128Gcm),
    Aes192(AesGcm<Aes192, U12>),
    Aes256(Aes256Gcm),
}

/// Decryption failed with every installed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no installed gossip key could decrypt the message")]
pub struct DecryptError;

impl Keyring {
    /// A keyring holding only `primary`, which must be 16, 24 or 32 bytes.
    pub fn new(primary: Vec<u8>) -> Result<Keyring, GossipError> {
        Ok(Keyring {
            keys: vec![Key::new(primary)?],
        })
    }

    /// A keyring from one base64 key, as given to `-encrypt`.
    pub fn from_base64(key: &str) -> Result<Keyring, GossipError> {
        Keyring::new(decode_base64(key)?)
    }

    /// Installs an additional key used only for decryption; a no-op if already installed.
    pub fn add_key(&mut self, key: Vec<u8>) -> Result<(), GossipError> {
        if !self.contains(&key) {
            self.keys.push(Key::new(key)?);
        }
        Ok(())
    }

    /// Makes an installed key the primary (encrypting) key.
    pub fn use_key(&mut self, key: &[u8]) -> Result<(), GossipError> {
        let pos = self.position(key).ok_or_else(|| {
            GossipError::InvalidKey("the key to use is not installed; add it first".to_owned())
        })?;
        let key = self.keys.remove(pos);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Removes a secondary key; the primary key cannot be removed.
    pub fn remove_key(&mut self, key: &[u8]) -> Result<(), GossipError> {
        match self.position(key) {
            Some(0) => Err(GossipError::InvalidKey(
                "cannot remove the primary key; use another key first".to_owned(),
            )),
            Some(pos) => {
                self.keys.remove(pos);
                Ok(())
            }
            None => Err(GossipError::InvalidKey(
                "the key is not installed".to_owned(),
            )),
        }
    }

    /// The primary key's raw bytes.
    pub fn primary_key(&self) -> &[u8] {
        &self.keys[0].raw
    }

    /// Raw bytes of every installed key, primary first.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(|k| k.raw.as_slice())
    }

    /// Seals `plaintext`: version byte, random 12-byte nonce, ciphertext and tag.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self.keys[0]
            .cipher
            .seal(&nonce, plaintext)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a message sealed by [`Keyring::encrypt`] with any installed key.
    pub fn decrypt(&self, sealed: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEALED_V1 {
            return Err(DecryptError);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        self.keys
            .iter()
            .find_map(|k| k.cipher.open(nonce, ciphertext))
            .ok_or(DecryptError)
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k.raw == key)
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.position(key).is_some()
    }
}

impl std::fmt::Debug for Keyring {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Decodes one base64 key, naming the problem for the user.
pub fn decode_base64(key: &str) -> Result<Vec<u8>, GossipError> {
    base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|e| GossipError::InvalidKey(format!("not valid base64 ({e})")))
}

impl Key {
    fn new(raw: Vec<u8>) -> Result<Key, GossipError> {
        let cipher = match raw.len() {
            16 => Cipher::Aes128(Aes128Gcm::new_from_slice(&raw).expect("16 bytes")),
            24 => Cipher::Aes192(AesGcm::new_from_slice(&raw).expect("24 bytes")),
            32 => Cipher::Aes256(Aes256Gcm::new_from_slice(&raw).expect("32 bytes")),
            n => {
                return Err(GossipError::InvalidKey(format!(
                    "key must be 16, 24 or 32 bytes (AES-128/192/256), got {n} bytes"
                )))
            }
        };
        Ok(Key { raw, cipher })
    }
}

impl Cipher {
    fn seal(&self, nonce: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, aes_gcm::Error> {
        let nonce = Nonce::<U12>::from_slice(nonce);
        match self {
            Cipher::Aes128(c) => c.encrypt(nonce, plaintext),
            Cipher::Aes192(c) => c.encrypt(nonce, plaintext),
            Cipher::Aes256(c) => c.encrypt(nonce, plaintext),
        }
    }

    fn open(&self, nonce: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::<U12>::from_slice(nonce);
        match self {
            Cipher::Aes128(c) => c.decrypt(nonce, ciphertext),
            Cipher::Aes192(c) => c.decrypt(nonce, ciphertext),
            Cipher::Aes256(c) => c.decrypt(nonce, ciphertext),
        }
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_key_lengths() {
        for len in [0, 8, 15, 17, 31, 33, 64] {
            let err = Keyring::new(vec![7; len]).unwrap_err();
            assert!(err.to_string().contains("16, 24 or 32 bytes"), "{err}");
        }
        for len in [16, 24, 32] {
            Keyring::new(vec![7; len]).unwrap();
        }
    }

    #[test]
    fn base64_round_trip_and_errors() {
        let key = generate_key();
        let ring = Keyring::from_base64(&key).unwrap();
        assert_eq!(ring.primary_key().len(), 32);
        let err = Keyring::from_base64("not base64!").unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 10]);
        assert!(Keyring::from_base64(&short).is_err());
    }

    #[test]
    fn encrypt_decrypt_each_key_size() {
        for len in [16, 24, 32] {
            let ring = Keyring::new(vec![len as u8; len]).unwrap();
            let sealed = ring.encrypt(b"hello");
            assert_eq!(sealed[0], SEALED_V1);
            assert_eq!(sealed.len(), 1 + NONCE_LEN + 5 + TAG_LEN);
            assert_eq!(ring.decrypt(&sealed).unwrap(), b"hello");
        }
    }

    #[test]
    fn nonces_differ_between_messages() {
        let ring = Keyring::new(vec![1; 32]).unwrap();
        assert_ne!(ring.encrypt(b"same"), ring.encrypt(b"same"));
    }

    #[test]
    fn wrong_key_and_tampering_fail() {
        let a = Keyring::new(vec![1; 32]).unwrap();
        let b = Keyring::new(vec![2; 32]).unwrap();
        let sealed = a.encrypt(b"secret");
        assert_eq!(b.decrypt(&sealed), Err(DecryptError));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(a.decrypt(&tampered), Err(DecryptError));
        assert_eq!(a.decrypt(b"\x01short"), Err(DecryptError));
        assert_eq!(
            a.decrypt(b"plain text that is long enough to look sealed"),
            Err(DecryptError)
        );
    }

    #[test]
    fn rotation_decrypts_with_secondary_key() {
        let old = vec![1; 32];
        let new = vec![2; 16];
        let sender = Keyring::new(old.clone()).unwrap();
        let mut receiver = Keyring::new(old.clone()).unwrap();

        // Step 1: install the new key everywhere; the old one still encrypts.
        receiver.add_key(new.clone()).unwrap();
        receiver.use_key(&new).unwrap();
        assert_eq!(receiver.primary_key(), new.as_slice());
        // The receiver now encrypts with `new` but still reads old-key traffic.
        assert_eq!(receiver.decrypt(&sender.encrypt(b"x")).unwrap(), b"x");

        // Step 2: a sender that switched to the new key is readable by an old-primary node.
        let mut old_primary = Keyring::new(old.clone()).unwrap();
        old_primary.add_key(new.clone()).unwrap();
        assert_eq!(old_primary.decrypt(&receiver.encrypt(b"y")).unwrap(), b"y");

        // Step 3: removing the old key stops old-key traffic.
        assert!(
            receiver.remove_key(&new).is_err(),
            "primary cannot be removed"
        );
        receiver.remove_key(&old).unwrap();
        assert_eq!(receiver.keys().count(), 1);
        assert!(receiver.decrypt(&sender.encrypt(b"z")).is_err());
        assert!(receiver.use_key(&old).is_err());
    }

    #[test]
    fn debug_hides_key_material() {
        let ring = Keyring::new(vec![0xAB; 16]).unwrap();
        assert_eq!(format!("{ring:?}"), "Keyring { keys: 1 }");
    }
}
