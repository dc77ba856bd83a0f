//! Hand out a short-lived link to one stored image.

use std::time::Duration;

use bytes::Bytes;

use super::auth::Caller;
use crate::domain::ids::MediaId;
use crate::domain::job::MediaItem;
use crate::ports::{JobStore, MediaError, MediaReader, PresignedUrl, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Media(#[from] MediaError),
}

pub struct ContentService<S, M> {
    store: S,
    media: M,
    ttl: Duration,
}

impl<S: JobStore, M: MediaReader> ContentService<S, M> {
    pub fn new(store: S, media: M, ttl: Duration) -> Self {
        Self { store, media, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The media item, if the caller owns it or `signed` says a signed link names it, with its
    /// bytes: what `GET /v1/files/{media_id}` serves.
    pub async fn file(
        &self,
        caller: Option<&Caller>,
        signed: bool,
        id: MediaId,
    ) -> Result<Option<(MediaItem, Bytes)>, ContentError> {
        let Some(item) = self
            .store
            .media(id)
            .await?
            .filter(|item| signed || caller.is_some_and(|caller| item.owner == caller.owner))
        else {
            return Ok(None);
        };
        tracing::Span::current().record("job_id", tracing::field::display(item.job_id));
        let bytes = self.media.get(&item.bucket, &item.key).await?;
        Ok(Some((item, bytes)))
    }

    /// The caller's media item and a presigned GET for it, or `None` if there is no such media
    /// of theirs.
    pub async fn link(&self, caller: &Caller, id: MediaId) -> Result<Option<(MediaItem, PresignedUrl)>, ContentError> {
        let Some(item) = self.store.media(id).await?.filter(|item| item.owner == caller.owner) else {
            return Ok(None);
        };
        tracing::Span::current().record("job_id", tracing::field::display(item.job_id));
        let url = self.media.presign_get(&item.bucket, &item.key, self.ttl).await?;
        Ok(Some((item, url)))
    }
}
