//! The keyring that seals secrets at rest: AES-256-GCM keys in
//! `data_dir/keyring.json` (0600), one of them active. A secret's values are
//! sealed as one JSON object with a fresh random nonce, bound to its
//! namespace and name (the associated data), so a sealed row moved under
//! another name does not open.

use crate::error::ServerError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const FILE: &str = "keyring.json";

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    id: String,
    /// 32 bytes, base64.
    key: String,
    /// Unix milliseconds.
    created: i64,
}

#[derive(Clone, Serialize, Deserialize)]
struct KeyFile {
    active: String,
    keys: Vec<StoredKey>,
}

pub(crate) struct Keyring {
    path: PathBuf,
    file: Mutex<KeyFile>,
    rng: SystemRandom,
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> ServerError {
    ServerError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

fn crypto(what: &str) -> ServerError {
    ServerError::Internal(format!("keyring: {what}"))
}

impl Keyring {
    /// Loads the keyring, or makes one with a new key on first start.
    pub(crate) fn open(data_dir: &Path, now: i64) -> Result<Keyring, ServerError> {
        let path = data_dir.join(FILE);
        let rng = SystemRandom::new();
        let file = match std::fs::read(&path) {
            Ok(bytes) => {
                let f: KeyFile = serde_json::from_slice(&bytes).map_err(|e| {
                    ServerError::Internal(format!("keyring {} is corrupt: {e}", path.display()))
                })?;
                if !f.keys.iter().any(|k| k.id == f.active) {
                    return Err(ServerError::Internal(format!(
                        "keyring {} names active key {:?}, which it does not hold",
                        path.display(),
                        f.active
                    )));
                }
                f
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = new_key(&rng, now)?;
                let f = KeyFile {
                    active: key.id.clone(),
                    keys: vec![key],
                };
                write(&path, &f)?;
                f
            }
            Err(e) => return Err(io("read", &path, e)),
        };
        Ok(Keyring {
            path,
            file: Mutex::new(file),
            rng,
        })
    }

    fn file(&self) -> std::sync::MutexGuard<'_, KeyFile> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, id: &str) -> Result<LessSafeKey, ServerError> {
        let f = self.file();
        let k = f
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| crypto(&format!("no key {id:?} (was the keyring replaced?)")))?;
        let bytes = B64
            .decode(&k.key)
            .map_err(|_| crypto("a key is not base64"))?;
        let unbound =
            UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| crypto("a key is not 32 bytes"))?;
        Ok(LessSafeKey::new(unbound))
    }

    /// The active key's id.
    pub(crate) fn active(&self) -> String {
        self.file().active.clone()
    }

    /// Seals `data` under the active key for the object `aad` names:
    /// (key id, base64 of nonce + ciphertext + tag).
    pub(crate) fn seal(
        &self,
        aad: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<(String, String), ServerError> {
        let id = self.active();
        let key = self.key(&id)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| crypto("no randomness for a nonce"))?;
        let mut buf = serde_json::to_vec(data).map_err(|e| crypto(&e.to_string()))?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut buf,
        )
        .map_err(|_| crypto("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok((id, B64.encode(out)))
    }

    /// The values `seal` sealed, checked against their tag and `aad`.
    pub(crate) fn open_sealed(
        &self,
        key_id: &str,
        aad: &str,
        sealed: &str,
    ) -> Result<BTreeMap<String, String>, ServerError> {
        let key = self.key(key_id)?;
        let bytes = B64
            .decode(sealed)
            .map_err(|_| crypto("a sealed secret is not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(crypto("a sealed secret is too short"));
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| crypto("bad nonce"))?;
        let mut buf = rest.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| {
                crypto(&format!(
                    "secret {aad:?} does not open: wrong key or altered"
                ))
            })?;
        serde_json::from_slice(plain).map_err(|e| crypto(&e.to_string()))
    }

    /// Adds a new key and makes it the active one; the old keys stay until
    /// [`Keyring::retire`], so what they sealed still opens meanwhile.
    pub(crate) fn add_key(&self, now: i64) -> Result<String, ServerError> {
        let key = new_key(&self.rng, now)?;
        let mut f = self.file().clone();
        f.active = key.id.clone();
        f.keys.push(key);
        write(&self.path, &f)?;
        let id = f.active.clone();
        *self.file() = f;
        Ok(id)
    }

    /// Drops every key but the active one: call once nothing is sealed
    /// under them any more. Returns how many went.
    pub(crate) fn retire(&self) -> Result<usize, ServerError> {
        let mut f = self.file().clone();
        let before = f.keys.len();
        let active = f.active.clone();
        f.keys.retain(|k| k.id == active);
        write(&self.path, &f)?;
        *self.file() = f;
        Ok(before - 1)
    }
}

fn new_key(rng: &SystemRandom, now: i64) -> Result<StoredKey, ServerError> {
    let mut key = [0u8; 32];
    rng.fill(&mut key)
        .map_err(|_| crypto("no randomness for a key"))?;
    let mut id = [0u8; 8];
    rng.fill(&mut id)
        .map_err(|_| crypto("no randomness for a key id"))?;
    Ok(StoredKey {
        id: id.iter().map(|b| format!("{b:02x}")).collect(),
        key: B64.encode(key),
        created: now,
    })
}

/// Writes the keyring 0600, crash-safe (`pki::write_file`).
fn write(path: &Path, f: &KeyFile) -> Result<(), ServerError> {
    let text = serde_json::to_string_pretty(f).map_err(|e| crypto(&e.to_string()))?;
    crate::pki::write_file(path, &text, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keyring::open(dir.path(), 1).unwrap();
        let data = BTreeMap::from([("pem".to_string(), "hush".to_string())]);
        let (id, sealed) = k.seal("default/tls", &data).unwrap();
        assert!(!sealed.contains("hush"));
        assert_eq!(k.open_sealed(&id, "default/tls", &sealed).unwrap(), data);
        // Bound to its name: moved under another, it does not open.
        assert!(k.open_sealed(&id, "default/other", &sealed).is_err());
        let mut tampered = B64.decode(&sealed).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(
            k.open_sealed(&id, "default/tls", &B64.encode(tampered))
                .is_err()
        );

        let new = k.add_key(2).unwrap();
        assert_ne!(new, id);
        assert_eq!(k.open_sealed(&id, "default/tls", &sealed).unwrap(), data);
        assert_eq!(k.retire().unwrap(), 1);
        assert!(k.open_sealed(&id, "default/tls", &sealed).is_err());
        // Loaded again from disk, 0600, with the new key only.
        let again = Keyring::open(dir.path(), 3).unwrap();
        assert_eq!(again.active(), new);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
