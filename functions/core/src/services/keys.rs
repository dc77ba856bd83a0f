//! Making, listing and revoking API keys, and rotating owners' webhook secrets: what
//! `mediagen-dev keys` does against any stack.

use std::time::Duration;

use chrono::Utc;

use crate::domain::keys::{ApiKey, KeyRecord, Owner};
use crate::domain::limits::KeyLimits;
use crate::domain::quota::{Month, QuotaChanges, Usage};
use crate::domain::webhook::{SigningState, grace_until};
use crate::ports::{Added, KeyStore, QuotaStore, SigningStore, StoreError, Transition};

#[derive(Debug, thiserror::Error)]
pub enum KeyAdminError {
    #[error("could not draw a random key: {0}")]
    Random(String),
    #[error("key {0}… was revoked and cannot be registered again; make a new one")]
    Revoked(String),
    #[error("key {0}… belongs to another owner")]
    OtherOwner(String),
    #[error("no key starts with {0:?}")]
    NoSuchPrefix(String),
    #[error("{count} keys start with {prefix:?}; give more of the key")]
    Ambiguous { prefix: String, count: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Limits to set on a key; `None` keeps the key's.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitChanges {
    pub creates_per_minute: Option<u32>,
    pub others_per_minute: Option<u32>,
    pub concurrent_waits: Option<u32>,
}

/// A revoked key, and the owner's webhook signing state if the key was the owner's last live
/// one, whose revocation revoked the owner's webhook secret too.
#[derive(Debug)]
pub struct Revoked {
    pub record: KeyRecord,
    pub secret_revoked: Option<SigningState>,
}

pub struct KeyAdmin<K> {
    keys: K,
}

impl<K: KeyStore + SigningStore> KeyAdmin<K> {
    pub fn new(keys: K) -> Self {
        Self { keys }
    }

    /// Stores a key for the owner: the given one (a local stack re-registering its key, which
    /// changes nothing if the owner has it already), or a new random one. Answers the key, to be
    /// shown once. A key revoked, or another owner's, is refused.
    pub async fn create(&self, owner: Owner, key: Option<ApiKey>) -> Result<(ApiKey, KeyRecord), KeyAdminError> {
        let key = match key {
            Some(key) => key,
            None => ApiKey::generate().map_err(|e| KeyAdminError::Random(e.to_string()))?,
        };
        let record = KeyRecord {
            hash: key.hash(),
            prefix: key.prefix(),
            owner,
            created_at: Utc::now(),
            revoked_at: None,
            limits: None,
        };
        match self.keys.add(&record).await? {
            Added::New => Ok((key, record)),
            Added::Existing(stored) if stored.revoked_at.is_some() => Err(KeyAdminError::Revoked(stored.prefix)),
            Added::Existing(stored) if stored.owner != record.owner => Err(KeyAdminError::OtherOwner(stored.prefix)),
            Added::Existing(stored) => Ok((key, stored)),
        }
    }

    pub async fn list(&self) -> Result<Vec<KeyRecord>, KeyAdminError> {
        Ok(self.keys.all().await?)
    }

    /// Sets the limits of the one live key that starts with `prefix`: each one given, the others
    /// as the key has them.
    pub async fn set_limits(&self, prefix: &str, changes: LimitChanges) -> Result<KeyRecord, KeyAdminError> {
        let record = Self::live_key(&self.keys.all().await?, prefix)?;
        let current = record.limits.unwrap_or_default();
        let limits = KeyLimits {
            creates_per_minute: changes.creates_per_minute.unwrap_or(current.creates_per_minute),
            others_per_minute: changes.others_per_minute.unwrap_or(current.others_per_minute),
            concurrent_waits: changes.concurrent_waits.unwrap_or(current.concurrent_waits),
        };
        match self.keys.set_limits(&record.hash, limits).await? {
            Transition::Applied => Ok(KeyRecord {
                limits: Some(limits),
                ..record
            }),
            Transition::Stale => Err(KeyAdminError::NoSuchPrefix(prefix.to_owned())),
        }
    }

    /// Revokes the one key that starts with `prefix`. If it is the owner's last live key, the
    /// owner's webhook secret is revoked first (the next generation, with no grace): a failure
    /// between the two leaves a live key with a fresh secret, never a revoked key with a secret
    /// that still verifies, and the same revoke run again finishes it (docs/design.md, "Webhooks").
    pub async fn revoke(&self, prefix: &str) -> Result<Revoked, KeyAdminError> {
        let all = self.keys.all().await?;
        let record = Self::live_key(&all, prefix)?;
        let last = !all
            .iter()
            .any(|other| other.owner == record.owner && other.revoked_at.is_none() && other.hash != record.hash);
        let secret_revoked = if last {
            Some(self.keys.next_generation(&record.owner, None).await?)
        } else {
            None
        };
        let now = Utc::now();
        match self.keys.revoke(&record.hash, now).await? {
            Transition::Applied => Ok(Revoked {
                record: KeyRecord {
                    revoked_at: Some(now),
                    ..record
                },
                secret_revoked,
            }),
            Transition::Stale => Err(KeyAdminError::NoSuchPrefix(prefix.to_owned())),
        }
    }

    /// Moves the owner's webhook secret to the next generation; the current one keeps verifying
    /// for `grace` (no time: it stops at once). Needs no master key: only generations are stored.
    pub async fn rotate_webhook_secret(&self, owner: &Owner, grace: Duration) -> Result<SigningState, KeyAdminError> {
        Ok(self.keys.next_generation(owner, grace_until(Utc::now(), grace)).await?)
    }

    /// The one live key that starts with `prefix`.
    fn live_key(all: &[KeyRecord], prefix: &str) -> Result<KeyRecord, KeyAdminError> {
        let mut matching: Vec<&KeyRecord> = all
            .iter()
            .filter(|record| record.revoked_at.is_none() && !prefix.is_empty() && record.prefix.starts_with(prefix))
            .collect();
        match matching.len() {
            0 => Err(KeyAdminError::NoSuchPrefix(prefix.to_owned())),
            1 => Ok(matching.remove(0).clone()),
            count => Err(KeyAdminError::Ambiguous {
                prefix: prefix.to_owned(),
                count,
            }),
        }
    }
}
impl<K: QuotaStore> KeyAdmin<K> {
    /// Changes the owner's quota (docs/design.md, "Quotas"), and answers it with this month's use.
    pub async fn set_quota(&self, owner: &Owner, changes: QuotaChanges) -> Result<Usage, KeyAdminError> {
        self.keys.set_quota(owner, changes).await?;
        Ok(self.keys.usage(owner, Month::of(Utc::now())).await?)
    }
}
