//! Configs and secrets (Swarm's names): named, versioned sets of
//! `key = value` a task asks for by name and gets as files (and, where
//! asked, env vars). A secret is stored sealed; only its key names are
//! readable through the API.

use crate::limits::MAX_NAME_LEN;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Keys per config or secret.
pub const MAX_OBJECT_KEYS: usize = 64;
/// Bytes of one value.
pub const MAX_OBJECT_VALUE: usize = 256 * 1024;
/// Bytes of all values of one object.
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024;

/// A config as stored and read back: its values in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigObject {
    pub namespace: String,
    pub name: String,
    /// 1 for the first put, one more for each put after.
    pub version: u64,
    pub data: BTreeMap<String, String>,
    /// Unix milliseconds of the last put.
    pub modify_time: i64,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// A secret as the store keeps it: its values sealed (AES-256-GCM) under a
/// key of the server's keyring; the API shows only the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretObject {
    pub namespace: String,
    pub name: String,
    pub version: u64,
    /// The names of its keys (never the values).
    pub keys: Vec<String>,
    pub modify_time: i64,
    /// The keyring key that sealed it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(skip)]
    pub key_id: String,
    /// Nonce and ciphertext with its tag, base64; cleared in API answers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(skip)]
    pub sealed: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl SecretObject {
    /// The secret as the API shows it: without its sealed values.
    pub fn metadata(&self) -> SecretObject {
        SecretObject {
            key_id: String::new(),
            sealed: String::new(),
            ..self.clone()
        }
    }
}

/// The store's key of a config or secret.
pub fn object_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A task's `config "NAME" { ... }` or `secret "NAME" { ... }` block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataRef {
    #[schemars(length(min = 1, max = MAX_NAME_LEN))]
    pub name: String,
    /// A path relative to the task's directory; `configs/NAME` or
    /// `secrets/NAME` when unset. A secret's must be under `secrets/`, a
    /// config's under `configs/` or `local/`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination: String,
    /// Which key's value the file holds; unset for an object with one key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Also give the value to the task as this environment variable
    /// (configs only: a task's environment is kept on disk by the drivers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env: String,
    /// The file's mode, octal (`"0400"`); 0444 for configs, 0400 for
    /// secrets when unset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

impl DataRef {
    /// The file's path relative to the task dir.
    pub fn path(&self, secret: bool) -> String {
        if !self.destination.is_empty() {
            return self.destination.trim_start_matches("./").to_string();
        }
        let dir = if secret { "secrets" } else { "configs" };
        format!("{dir}/{}", self.name)
    }

    /// The file's mode bits.
    pub fn mode_bits(&self, secret: bool) -> u32 {
        let default = if secret { 0o400 } else { 0o444 };
        parse_mode(&self.mode).unwrap_or(default)
    }

    /// The value the task gets out of the object's `data`.
    pub fn pick<'a>(&self, data: &'a BTreeMap<String, String>) -> Result<&'a str, String> {
        if !self.key.is_empty() {
            return data.get(&self.key).map(String::as_str).ok_or_else(|| {
                format!(
                    "{:?} has no key {:?}; its keys are {}",
                    self.name,
                    self.key,
                    keys(data)
                )
            });
        }
        match data.len() {
            1 => Ok(data.values().next().map(String::as_str).unwrap_or_default()),
            _ => Err(format!(
                "{:?} has keys {}: name one with `key = ...`",
                self.name,
                keys(data)
            )),
        }
    }
}

fn keys(data: &BTreeMap<String, String>) -> String {
    let v: Vec<&str> = data.keys().map(String::as_str).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// An octal mode such as `0400` or `644`, at most 0777.
pub fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

/// What is wrong with a key of a config or secret, if anything.
pub fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() || key.len() > 128 {
        return Some(format!("key {key:?} must be 1 to 128 bytes"));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Some(format!(
            "key {:?} may hold only ASCII letters, digits, '_', '-' and '.'",
            key.chars().take(40).collect::<String>()
        ));
    }
    None
}

/// What is wrong with the values put into a config or secret.
pub fn data_problem(data: &BTreeMap<String, String>) -> Option<String> {
    if data.is_empty() {
        return Some("give at least one key=value".to_string());
    }
    if data.len() > MAX_OBJECT_KEYS {
        return Some(format!(
            "{} keys; the limit is {MAX_OBJECT_KEYS}",
            data.len()
        ));
    }
    let mut total = 0usize;
    for (k, v) in data {
        if let Some(p) = key_problem(k) {
            return Some(p);
        }
        if v.len() > MAX_OBJECT_VALUE {
            return Some(format!(
                "the value of {k} is {} bytes; the limit is {MAX_OBJECT_VALUE}",
                v.len()
            ));
        }
        total += v.len();
    }
    (total > MAX_OBJECT_BYTES)
        .then(|| format!("the values hold {total} bytes; the limit is {MAX_OBJECT_BYTES}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_and_bounded() {
        assert_eq!(parse_mode("0400"), Some(0o400));
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        for bad in ["", "0800", "1777", "rw", "07777"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_ref_picks_its_key_or_the_only_one() {
        let one = BTreeMap::from([("pem".to_string(), "x".to_string())]);
        let two = BTreeMap::from([
            ("cert".to_string(), "c".to_string()),
            ("key".to_string(), "k".to_string()),
        ]);
        let mut r = DataRef {
            name: "tls".into(),
            destination: String::new(),
            key: String::new(),
            env: String::new(),
            mode: String::new(),
        };
        assert_eq!(r.pick(&one), Ok("x"));
        assert!(r.pick(&two).unwrap_err().contains("cert, key"));
        r.key = "key".into();
        assert_eq!(r.pick(&two), Ok("k"));
        assert_eq!(r.path(true), "secrets/tls");
        assert_eq!(r.mode_bits(true), 0o400);
    }
}
