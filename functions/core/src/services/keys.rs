//! Making, listing and revoking API keys: what `mediagen-dev keys` does against any stack.

use chrono::Utc;

use crate::domain::keys::{ApiKey, KeyRecord, Owner};
use crate::domain::limits::KeyLimits;
use crate::domain::quota::{Month, QuotaChanges, Usage};
use crate::ports::{Added, KeyStore, QuotaStore, StoreError, Transition};

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

pub struct KeyAdmin<K> {
    keys: K,
}

impl<K: KeyStore> KeyAdmin<K> {
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
        let record = self.live_key(prefix).await?;
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

    /// Revokes the one key that starts with `prefix`.
    pub async fn revoke(&self, prefix: &str) -> Result<KeyRecord, KeyAdminError> {
        let record = self.live_key(prefix).await?;
        let now = Utc::now();
        match self.keys.revoke(&record.hash, now).await? {
            Transition::Applied => Ok(KeyRecord {
                revoked_at: Some(now),
                ..record
            }),
            Transition::Stale => Err(KeyAdminError::NoSuchPrefix(prefix.to_owned())),
        }
    }

    /// The one live key that starts with `prefix`.
    async fn live_key(&self, prefix: &str) -> Result<KeyRecord, KeyAdminError> {
        let mut matching: Vec<KeyRecord> = self
            .keys
            .all()
            .await?
            .into_iter()
            .filter(|record| record.revoked_at.is_none() && !prefix.is_empty() && record.prefix.starts_with(prefix))
            .collect();
        match matching.len() {
            0 => Err(KeyAdminError::NoSuchPrefix(prefix.to_owned())),
            1 => Ok(matching.remove(0)),
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
