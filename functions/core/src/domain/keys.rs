//! API keys and the owners they stand for (docs/design.md, "API keys and owners"). A key is
//! shown once, when it is made; only its SHA-256 hash is stored, with a short prefix by which
//! its owner can recognise it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::secret::Secret;

use super::limits::KeyLimits;

/// What every key starts with, so that a leaked one is easy to spot (and to scan for).
pub const KEY_MARK: &str = "mgk_";
/// Random bytes in a key: 192 bits.
const KEY_BYTES: usize = 24;
/// Characters of a key after its mark.
const KEY_BODY_CHARS: usize = 32;
/// Characters of the body shown as the key's prefix.
const PREFIX_BODY_CHARS: usize = 8;

/// Who owns jobs: the name a key was made for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an owner name has 1 to 64 characters, letters, digits, '.', '_', '-' or '@'")]
pub struct InvalidOwner;

impl Owner {
    pub fn parse(raw: &str) -> Result<Self, InvalidOwner> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidOwner)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of a key, in hex: what is stored and looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyHash(String);

impl KeyHash {
    pub fn from_hex(hex: impl Into<String>) -> Self {
        Self(hex.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub hash: KeyHash,
    pub prefix: String,
    pub owner: Owner,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Limits set for this key; the defaults when `None`.
    pub limits: Option<KeyLimits>,
}

/// Why a presented key is not a key of ours, before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("no Authorization header")]
    Missing,
    #[error("the Authorization header is not `Bearer <key>` with a mediagen key")]
    Malformed,
}

/// A key as presented or as just made: its text is a secret.
#[derive(Debug, Clone)]
pub struct ApiKey(Secret);

impl ApiKey {
    /// A new random key.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::getrandom(&mut bytes)?;
        Ok(Self(Secret::new(format!(
            "{KEY_MARK}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        ))))
    }

    /// A key in its text form: the mark and 32 URL-safe base64 characters.
    pub fn parse(raw: &str) -> Result<Self, KeyFormatError> {
        let body = raw.strip_prefix(KEY_MARK).ok_or(KeyFormatError::Malformed)?;
        let valid = body.len() == KEY_BODY_CHARS
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(Secret::new(raw)))
        } else {
            Err(KeyFormatError::Malformed)
        }
    }

    /// The key in an `Authorization` header's value, if it is `Bearer <key>`.
    pub fn from_authorization(header: Option<&str>) -> Result<Self, KeyFormatError> {
        let header = header.ok_or(KeyFormatError::Missing)?.trim();
        let (scheme, token) = header.split_once(' ').ok_or(KeyFormatError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(KeyFormatError::Malformed);
        }
        Self::parse(token.trim())
    }

    pub fn hash(&self) -> KeyHash {
        let digest = Sha256::digest(self.0.expose().as_bytes());
        KeyHash(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The first characters, enough for an owner to tell their keys apart, too few to use.
    pub fn prefix(&self) -> String {
        self.0
            .expose()
            .chars()
            .take(KEY_MARK.len() + PREFIX_BODY_CHARS)
            .collect()
    }

    /// The whole key, for showing it once to whom it was made for.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_owner() -> Owner {
        Owner::parse("tester").unwrap()
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = ApiKey::generate().unwrap();
        let b = ApiKey::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), KEY_MARK.len() + KEY_BODY_CHARS);
        assert!(ApiKey::parse(a.expose()).is_ok());
        assert_eq!(a.prefix().len(), 12);
        assert!(a.expose().starts_with(&a.prefix()));
    }

    #[test]
    fn the_hash_is_sha256_in_hex() {
        let key = ApiKey::parse("mgk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(key.hash().as_str().len(), 64);
        assert_eq!(key.hash(), ApiKey::parse(key.expose()).unwrap().hash());
        assert!(!format!("{key:?}").contains("AAAA"));
    }

    #[test]
    fn only_bearer_headers_with_our_keys_are_accepted() {
        let key = "mgk_abcdefghijklmnopqrstuvwxyz012345";
        assert!(ApiKey::from_authorization(Some(&format!("Bearer {key}"))).is_ok());
        assert!(ApiKey::from_authorization(Some(&format!("bearer {key}"))).is_ok());
        assert_eq!(ApiKey::from_authorization(None).unwrap_err(), KeyFormatError::Missing);
        for bad in [
            "Basic dXNlcjpwdw==",
            "Bearer",
            "Bearer mgk_short",
            "Bearer sk_abcdefghijklmnopqrstuvwxyz0123456",
            "Bearer mgk_abcdefghijklmnopqrstuvwxyz01234!",
            "",
        ] {
            assert_eq!(
                ApiKey::from_authorization(Some(bad)).unwrap_err(),
                KeyFormatError::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn owner_names_are_checked() {
        assert!(Owner::parse("team-a.prod@example").is_ok());
        for bad in ["", "a b", "x".repeat(65).as_str(), "ä"] {
            assert!(Owner::parse(bad).is_err(), "{bad}");
        }
    }
}
