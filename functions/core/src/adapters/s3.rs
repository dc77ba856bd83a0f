//! Media objects in a private S3 bucket, read through presigned URLs.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use chrono::Utc;

use super::describe_error as describe;
use super::presign::Presigner;
use crate::ports::{MediaError, MediaStore, PresignedUrl};

#[derive(Debug, Clone)]
pub struct S3MediaStore {
    client: Client,
    /// Signs URLs for the endpoint clients can reach, which may not be the one we write to.
    presigner: Arc<Presigner>,
    bucket: String,
}

impl S3MediaStore {
    /// Writes through the SDK's endpoint; signs URLs for `presign_endpoint` if given (a client
    /// may reach storage at another address than the functions do).
    pub fn from_sdk(
        sdk: &SdkConfig,
        bucket: impl Into<String>,
        presign_endpoint: Option<&str>,
    ) -> Result<Self, MediaError> {
        Ok(Self {
            client: super::aws::s3(sdk, None),
            presigner: Arc::new(Presigner::new(sdk, presign_endpoint)?),
            bucket: bucket.into(),
        })
    }
}

impl MediaStore for S3MediaStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), MediaError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| MediaError::Unavailable(describe(&e)))?;
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, MediaError> {
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| MediaError::Unavailable(describe(&e)))?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| MediaError::Unavailable(describe(&e)))?;
        Ok(body.into_bytes())
    }

    async fn delete(&self, key: &str) -> Result<(), MediaError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| MediaError::Unavailable(describe(&e)))?;
        Ok(())
    }

    async fn presign_get(&self, bucket: &str, key: &str, ttl: Duration) -> Result<PresignedUrl, MediaError> {
        let signed_at = Utc::now();
        let (url, lifetime) = self.presigner.presign_get(bucket, key, ttl, signed_at).await?;
        Ok(PresignedUrl {
            url,
            expires_at: signed_at + lifetime,
        })
    }
}
