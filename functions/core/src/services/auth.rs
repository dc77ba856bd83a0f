//! Who is calling (docs/design.md, "API keys and owners"): a bearer key, checked against the
//! stored hashes. Answers are cached per instance for [`CACHE_FOR`], so a revoked key stops
//! working within that time, and a warm function checks most requests without a read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::keys::{ApiKey, KeyFormatError, KeyHash, Owner};
use crate::ports::{KeyStore, StoreError};

/// How long a found key is trusted without reading it again: the most a revocation waits.
pub const CACHE_FOR: Duration = Duration::from_secs(30);
/// Keys remembered per instance; past that the cache starts over.
const CACHE_SIZE: usize = 10_000;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner: Owner,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Format(#[from] KeyFormatError),
    #[error("the key is unknown or revoked")]
    Refused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Authenticator<K> {
    keys: K,
    cache: Mutex<HashMap<KeyHash, (Owner, Instant)>>,
}

impl<K: KeyStore> Authenticator<K> {
    pub fn new(keys: K) -> Self {
        Self {
            keys,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller an `Authorization` header's value names.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let key = ApiKey::from_authorization(authorization)?;
        let hash = key.hash();
        if let Some(owner) = self.cached(&hash) {
            return Ok(Caller { owner });
        }
        let record = self.keys.find(&hash).await?;
        let owner = match record {
            Some(record) if record.revoked_at.is_none() => record.owner,
            _ => return Err(AuthError::Refused),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
            cache.insert(hash, (owner.clone(), Instant::now()));
        }
        Ok(Caller { owner })
    }

    fn cached(&self, hash: &KeyHash) -> Option<Owner> {
        let cache = self.cache.lock().ok()?;
        let (owner, since) = cache.get(hash)?;
        (since.elapsed() < CACHE_FOR).then(|| owner.clone())
    }
}
