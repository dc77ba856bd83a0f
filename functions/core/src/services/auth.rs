//! Who is calling (docs/design.md, "API keys and owners"): a bearer key, checked against the
//! stored hashes. Answers are cached per instance for [`CACHE_FOR`], so a revoked key stops
//! working within that time, and a warm function checks most requests without a read. Then
//! whether the key may make this request now ("Rate limits"): one conditional write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::keys::{ApiKey, KeyFormatError, KeyHash, Owner};
use crate::domain::limits::{Allowance, KeyLimits, RouteClass, Window};
use crate::ports::{Counted, KeyStore, StoreError};

/// How long a found key is trusted without reading it again: the most a revocation waits.
pub const CACHE_FOR: Duration = Duration::from_secs(30);
/// Keys remembered per instance; past that the cache starts over.
const CACHE_SIZE: usize = 10_000;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner: Owner,
    pub key: KeyHash,
    pub limits: KeyLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Format(#[from] KeyFormatError),
    #[error("the key is unknown or revoked")]
    Refused,
    /// The key has made as many requests of this class as its limit allows in this window.
    #[error("the key's {} limit is used up for {} s", .0.class.name(), .0.reset_seconds)]
    Limited(Allowance),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Authenticator<K> {
    keys: K,
    cache: Mutex<HashMap<KeyHash, (Owner, KeyLimits, Instant)>>,
}

impl<K: KeyStore> Authenticator<K> {
    pub fn new(keys: K) -> Self {
        Self {
            keys,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller an `Authorization` header's value names, admitted for one request of
    /// `class` at `now` under its key's limit: with what the limit still allows.
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        class: RouteClass,
        now: DateTime<Utc>,
    ) -> Result<(Caller, Allowance), AuthError> {
        let caller = self.authenticate(authorization).await?;
        let quota = caller.limits.of(class);
        let window = Window::at(now);
        let mut allowance = Allowance {
            class,
            quota,
            remaining: 0,
            reset_seconds: window.seconds_left(now),
        };
        match self.keys.count_request(&caller.key, class, window, quota).await? {
            Counted::Within(count) => {
                allowance.remaining = quota.saturating_sub(count);
                Ok((caller, allowance))
            }
            Counted::Over => Err(AuthError::Limited(allowance)),
        }
    }

    /// The caller an `Authorization` header's value names.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let key = ApiKey::from_authorization(authorization)?;
        let hash = key.hash();
        if let Some(caller) = self.cached(&hash) {
            return Ok(caller);
        }
        let caller = match self.keys.find(&hash).await? {
            Some(record) if record.revoked_at.is_none() => Caller {
                owner: record.owner,
                key: hash,
                limits: record.limits.unwrap_or_default(),
            },
            _ => return Err(AuthError::Refused),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
            cache.insert(
                caller.key.clone(),
                (caller.owner.clone(), caller.limits, Instant::now()),
            );
        }
        Ok(caller)
    }

    fn cached(&self, hash: &KeyHash) -> Option<Caller> {
        let cache = self.cache.lock().ok()?;
        let (owner, limits, since) = cache.get(hash)?;
        (since.elapsed() < CACHE_FOR).then(|| Caller {
            owner: owner.clone(),
            key: hash.clone(),
            limits: *limits,
        })
    }
}
