//! `Idempotency-Key` (docs/design.md, "Idempotency"): a retried submit with the same key and body
//! answers the original job instead of making a second one.

use sha2::{Digest, Sha256};

/// How long a key is remembered.
pub const IDEMPOTENCY_WINDOW_SECONDS: i64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        let visible = (1..=255).contains(&raw.len()) && raw.iter().all(|b| (0x21..=0x7e).contains(b));
        match std::str::from_utf8(raw) {
            Ok(text) if visible => Ok(Self(text.to_owned())),
            _ => Err(InvalidIdempotencyKey),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The fingerprint of a request body: a hash of its JSON with sorted keys and no insignificant
/// whitespace, so that the same request sent twice matches however it was formatted.
pub fn request_fingerprint(body: &serde_json::Value) -> String {
    let canonical = body.to_string();
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse(b"order-42").is_ok());
        assert!(IdempotencyKey::parse("x".repeat(255).as_bytes()).is_ok());
        for bad in [
            &b""[..],
            b"has space",
            b"tab\there",
            "é".as_bytes(),
            "x".repeat(256).as_bytes(),
        ] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_fingerprint_ignores_key_order_and_whitespace() {
        let a: serde_json::Value = serde_json::from_str(r#"{"prompt": "a",  "seed": 1}"#).unwrap();
        let b = json!({"seed": 1, "prompt": "a"});
        assert_eq!(request_fingerprint(&a), request_fingerprint(&b));
        assert_ne!(
            request_fingerprint(&a),
            request_fingerprint(&json!({"prompt": "b", "seed": 1}))
        );
    }
}
