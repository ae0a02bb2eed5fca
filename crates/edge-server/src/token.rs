//! The join token agents present: made once, kept in the data dir as the
//! whole token (`K10<CA fingerprint>::<secret>`, 0600), rotated on demand.
//! Only the secret is checked, in constant time, and it is never logged.

use crate::ServerError;
use edge_api::tls::JoinToken;
use std::path::Path;

/// Reads the secret from `data_dir/token` (or makes one) and writes the
/// file again when it does not pin `fingerprint` (a token from before the
/// CA, or from another CA).
pub fn load_or_create(data_dir: &Path, fingerprint: &str) -> Result<String, ServerError> {
    let path = data_dir.join("token");
    let secret = match std::fs::read_to_string(&path) {
        Ok(t) => JoinToken::parse(&t).ok().map(|t| (t.ca_pin, t.secret)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(ServerError::Io {
                action: "read token",
                path: path.display().to_string(),
                source: e,
            });
        }
    };
    match secret {
        Some((Some(pin), secret)) if pin == fingerprint => Ok(secret),
        Some((_, secret)) => {
            save(data_dir, fingerprint, &secret)?;
            Ok(secret)
        }
        None => {
            let secret = new_secret();
            save(data_dir, fingerprint, &secret)?;
            Ok(secret)
        }
    }
}

pub fn new_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn save(data_dir: &Path, fingerprint: &str, secret: &str) -> Result<(), ServerError> {
    crate::pki::write_file(
        &data_dir.join("token"),
        &format!("{}\n", JoinToken::format(fingerprint, secret)),
        0o600,
    )
}

pub use edge_api::tls::secret_matches;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_comparison_and_token_file() {
        assert!(secret_matches("abc", "abc"));
        assert!(!secret_matches("abd", "abc"));
        assert!(!secret_matches("", "abc"));
        let dir = tempfile::tempdir().unwrap();
        let fp = "a".repeat(64);
        let s = load_or_create(dir.path(), &fp).unwrap();
        assert_eq!(load_or_create(dir.path(), &fp).unwrap(), s);
        let text = std::fs::read_to_string(dir.path().join("token")).unwrap();
        assert_eq!(text.trim(), JoinToken::format(&fp, &s));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A new CA keeps the secret and pins the new fingerprint.
        let fp2 = "b".repeat(64);
        assert_eq!(load_or_create(dir.path(), &fp2).unwrap(), s);
        let text = std::fs::read_to_string(dir.path().join("token")).unwrap();
        assert!(text.starts_with(&format!("K10{fp2}::")));
    }
}
