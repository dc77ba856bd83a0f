//! Signed webhooks (docs/design.md, "Webhooks"), in the Standard Webhooks form: a secret is
//! `whsec_` and the base64 of the key's bytes; a delivery carries `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 of HMAC-SHA256 over "{id}.{timestamp}.{body}">`.
//! Each owner signs with a key of their own, derived from the deployment's master key, so that
//! one owner's secret cannot forge a delivery to another owner's receiver; rotating or revoking
//! it moves the owner to the next generation of that derivation, and during a rotation's grace a
//! delivery carries one signature per secret, as the specification allows several.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::ids::JobId;
use super::keys::Owner;
use super::retry::redelivery_delay_from;
use super::secret::Secret;

/// What every secret starts with.
pub const SECRET_MARK: &str = "whsec_";
/// What an owner's first key (generation 0) is derived over, before the owner's name.
const DERIVATION_LABEL: &str = "mediagen-webhook-key:";
/// What a later generation's key is derived over, before `<generation>:<owner>`. Owners' names
/// hold no `:` nor `#` (`domain/keys.rs`), so no two (generation, owner) share a label.
const GENERATION_LABEL: &str = "mediagen-webhook-key#";
/// How long a rotated-out secret still verifies, unless the rotation says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The longest grace a rotation may give the secret it replaces.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Key sizes the Standard Webhooks specification recommends: 192 to 512 bits.
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecret {
    #[error("must start with whsec_")]
    NoMark,
    #[error("must be whsec_ followed by standard base64")]
    NotBase64,
    #[error("must hold 24 to 64 bytes of key (whsec_ and 32 to 88 base64 characters)")]
    BadLength,
}

/// Key bytes, never shown.
#[derive(Clone, PartialEq, Eq)]
struct KeyBytes(Vec<u8>);

impl KeyBytes {
    fn parse(secret: &str) -> Result<Self, InvalidSecret> {
        let encoded = secret.strip_prefix(SECRET_MARK).ok_or(InvalidSecret::NoMark)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| InvalidSecret::NotBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(InvalidSecret::BadLength);
        }
        Ok(Self(bytes))
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
}

/// The deployment's master key (`WEBHOOK_SECRET`): never used to sign, only to derive the
/// owners' keys.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(KeyBytes);

impl MasterKey {
    pub fn parse(secret: &Secret) -> Result<Self, InvalidSecret> {
        KeyBytes::parse(secret.expose()).map(Self)
    }

    /// The owner's signing key of a generation: HMAC-SHA256(master key, label), the label
    /// `"mediagen-webhook-key:" + owner` for generation 0 (the key owners had before rotation
    /// existed, so their receivers keep working), `"mediagen-webhook-key#<generation>:" + owner`
    /// after.
    pub fn for_owner(&self, owner: &Owner, generation: u64) -> SigningKey {
        let mac = match generation {
            0 => self.0.mac(&[DERIVATION_LABEL.as_bytes(), owner.as_str().as_bytes()]),
            n => self.0.mac(&[
                GENERATION_LABEL.as_bytes(),
                n.to_string().as_bytes(),
                b":",
                owner.as_str().as_bytes(),
            ]),
        };
        SigningKey(KeyBytes(mac))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// The key one owner's deliveries are signed with, and their receiver verifies with.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(KeyBytes);

impl SigningKey {
    pub fn parse(secret: &Secret) -> Result<Self, InvalidSecret> {
        KeyBytes::parse(secret.expose()).map(Self)
    }

    /// The key in the form receivers are given: `whsec_<base64>`.
    pub fn secret(&self) -> Secret {
        Secret::new(format!("{SECRET_MARK}{}", STANDARD.encode(&self.0.0)))
    }

    /// The `webhook-signature` value for a message: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let signed = self.0.mac(&[
            message_id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ]);
        format!("v1,{}", STANDARD.encode(signed))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// The `webhook-signature` value for a message signed with each key: `v1,<sig>` per key,
/// space-separated, as Standard Webhooks writes several signatures; a receiver accepts the
/// message if any one verifies with its secret.
pub fn signature_header(keys: &[SigningKey], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let signatures: Vec<String> = keys.iter().map(|key| key.sign(message_id, timestamp, body)).collect();
    signatures.join(" ")
}

/// Which generations of an owner's key sign (docs/design.md, "Webhooks"). Only generations are
/// stored, never key material: the keys derive from the master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigningState {
    /// The generation that signs and that the owner is shown; 0 until the first rotation.
    pub generation: u64,
    /// The generation rotated out, still signing until its grace ends.
    pub previous: Option<Previous>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    pub generation: u64,
    pub until: DateTime<Utc>,
}

impl SigningState {
    /// The generations a delivery at `now` is signed with: the current one first, then the
    /// previous one while its grace lasts.
    pub fn signing(&self, now: DateTime<Utc>) -> Vec<u64> {
        let mut generations = vec![self.generation];
        if let Some(previous) = self.grace(now) {
            generations.push(previous.generation);
        }
        generations
    }

    /// The previous generation, if its grace has not ended at `now`.
    pub fn grace(&self, now: DateTime<Utc>) -> Option<Previous> {
        self.previous.filter(|previous| now < previous.until)
    }
}

/// When a grace of `grace` from `now` ends; none for no grace at all.
pub fn grace_until(now: DateTime<Utc>, grace: Duration) -> Option<DateTime<Utc>> {
    if grace.is_zero() {
        return None;
    }
    chrono::Duration::from_std(grace).ok().map(|grace| now + grace)
}

/// What a delivery announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    /// The job reached a final state: succeeded, failed or canceled.
    Completed,
}

impl WebhookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Completed => "completed",
        }
    }

    /// The `webhook-id`: the same for every attempt at one job's event, so that a receiver can
    /// drop the repeats a retry may bring.
    pub fn message_id(self, job_id: JobId) -> String {
        format!("msg_{job_id}_{}", self.as_str())
    }
}

/// How long a failed delivery waits before the next attempt, after the `receive_count`th: 30 s
/// doubling up to 15 minutes, jittered. With the delivery queue's 20 receives that spans about
/// four hours before the message goes to the dead-letter queue.
pub fn retry_delay(receive_count: u32) -> Duration {
    redelivery_delay_from(Duration::from_secs(30), receive_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification (its reference libraries' tests).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret(raw: &str) -> Secret {
        Secret::new(raw)
    }

    #[test]
    fn signs_the_specifications_example() {
        let key = SigningKey::parse(&secret(SPEC_SECRET)).unwrap();
        assert_eq!(key.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes()), SPEC_SIGNATURE);
        assert_eq!(key.secret().expose(), SPEC_SECRET);
    }

    #[test]
    fn any_change_to_the_message_changes_the_signature() {
        let key = SigningKey::parse(&secret(SPEC_SECRET)).unwrap();
        for (id, timestamp, body) in [
            ("msg_other", SPEC_TIMESTAMP, SPEC_BODY),
            (SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY),
            (SPEC_ID, SPEC_TIMESTAMP, r#"{"test": 2432232315}"#),
        ] {
            assert_ne!(key.sign(id, timestamp, body.as_bytes()), SPEC_SIGNATURE);
        }
    }

    #[test]
    fn owner_keys_are_derived_from_the_master_key() {
        // Computed independently with Python's hmac:
        // hmac.new(b64decode(master), b"mediagen-webhook-key:" + owner, sha256).
        let master = MasterKey::parse(&secret(SPEC_SECRET)).unwrap();
        let tester = master.for_owner(&Owner::parse("tester").unwrap(), 0);
        let alice = master.for_owner(&Owner::parse("alice").unwrap(), 0);
        assert_eq!(
            tester.secret().expose(),
            "whsec_6VdsCM66F8+CUd7MGaOVaLU/4vue7crIbPWfsYbKxoY="
        );
        assert_eq!(
            alice.secret().expose(),
            "whsec_+nXvTJqlg33lzxsEcvmJ6tTCdvSQ54PIli8ys0GzuO0="
        );
        // The owner's secret, handed to their receiver, verifies what they are sent.
        let given = SigningKey::parse(&tester.secret()).unwrap();
        assert_eq!(given.sign("msg", 1, b"{}"), tester.sign("msg", 1, b"{}"));
        assert_ne!(alice.sign("msg", 1, b"{}"), tester.sign("msg", 1, b"{}"));
    }

    #[test]
    fn each_generation_of_an_owners_key_is_another_key() {
        // hmac.new(b64decode(master), b"mediagen-webhook-key#1:tester", sha256), as above.
        let master = MasterKey::parse(&secret(SPEC_SECRET)).unwrap();
        let tester = Owner::parse("tester").unwrap();
        assert_eq!(
            master.for_owner(&tester, 1).secret().expose(),
            "whsec_3c2+V1ibWJfN8kH5B+qM08aDKUgFvFSmxk3RJAXnmyo="
        );
        let secrets: std::collections::HashSet<String> = (0..4)
            .map(|generation| master.for_owner(&tester, generation).secret().expose().to_owned())
            .collect();
        assert_eq!(secrets.len(), 4);
    }

    #[test]
    fn several_keys_sign_one_header_of_space_separated_signatures() {
        let old = SigningKey::parse(&secret(SPEC_SECRET)).unwrap();
        let new = MasterKey::parse(&secret(SPEC_SECRET))
            .unwrap()
            .for_owner(&Owner::parse("tester").unwrap(), 1);
        let body = SPEC_BODY.as_bytes();
        let header = signature_header(&[new.clone(), old.clone()], SPEC_ID, SPEC_TIMESTAMP, body);
        let signatures: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            signatures,
            [new.sign(SPEC_ID, SPEC_TIMESTAMP, body).as_str(), SPEC_SIGNATURE]
        );
        // One key, one signature: the header as before rotation existed.
        assert_eq!(signature_header(&[old], SPEC_ID, SPEC_TIMESTAMP, body), SPEC_SIGNATURE);
    }

    #[test]
    fn the_previous_generation_signs_until_its_grace_ends() {
        let now = Utc::now();
        let until = now + chrono::Duration::hours(24);
        let state = SigningState {
            generation: 3,
            previous: Some(Previous { generation: 2, until }),
        };
        assert_eq!(state.signing(now), [3, 2]);
        assert_eq!(state.signing(until - chrono::Duration::milliseconds(1)), [3, 2]);
        assert_eq!(state.signing(until), [3]);
        assert_eq!(state.grace(until), None);
        assert_eq!(SigningState::default().signing(now), [0]);
    }

    #[test]
    fn malformed_secrets_are_refused() {
        for (raw, expected) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", InvalidSecret::NoMark),
            ("whsec-MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", InvalidSecret::NoMark),
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", InvalidSecret::NotBase64),
            ("whsec_MfKQ9r8GKYqr_wjUPD8ILPZIo2LaLaSw", InvalidSecret::NotBase64),
            ("whsec_ MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", InvalidSecret::NotBase64),
            ("whsec_", InvalidSecret::BadLength),
            ("whsec_c2hvcnQ=", InvalidSecret::BadLength),
        ] {
            assert_eq!(MasterKey::parse(&secret(raw)), Err(expected), "{raw}");
        }
        let too_long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert_eq!(MasterKey::parse(&secret(&too_long)), Err(InvalidSecret::BadLength));
        let longest = format!("whsec_{}", STANDARD.encode([7u8; 64]));
        assert!(MasterKey::parse(&secret(&longest)).is_ok());
    }

    #[test]
    fn keys_do_not_print() {
        let master = MasterKey::parse(&secret(SPEC_SECRET)).unwrap();
        let key = master.for_owner(&Owner::parse("tester").unwrap(), 0);
        for shown in [format!("{master:?}"), format!("{key:?}"), format!("{:?}", key.secret())] {
            assert!(!shown.contains("MfKQ") && !shown.contains("6Vds"), "{shown}");
        }
    }

    #[test]
    fn retries_back_off_for_hours() {
        assert!((Duration::from_secs(24)..=Duration::from_secs(30)).contains(&retry_delay(1)));
        assert!(retry_delay(3) >= Duration::from_secs(96));
        assert!(retry_delay(40) <= Duration::from_secs(900));
        // The first 19 waits of a 20-receive queue, at their shortest (a fifth of jitter off).
        let least: u64 = (1..20).map(|n| retry_delay(n).as_secs()).sum();
        assert!(least >= 3 * 3600, "{least} s");
    }

    #[test]
    fn message_ids_are_stable_per_job_and_event() {
        let job = JobId::new();
        let id = WebhookEvent::Completed.message_id(job);
        assert_eq!(id, format!("msg_{job}_completed"));
        assert_eq!(id, WebhookEvent::Completed.message_id(job));
    }
}
