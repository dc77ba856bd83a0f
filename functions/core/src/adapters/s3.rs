//! Media objects in a private S3 bucket, read through presigned URLs.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use chrono::Utc;

use super::describe_error as describe;
use crate::ports::{MediaError, MediaStore, PresignedUrl};

#[derive(Debug, Clone)]
pub struct S3MediaStore {
    client: Client,
    /// Signs URLs for the endpoint clients can reach, which may not be the one we write to.
    presigner: Client,
    bucket: String,
}

impl S3MediaStore {
    pub fn new(client: Client, presigner: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            presigner,
            bucket: bucket.into(),
        }
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

    async fn presign_get(&self, bucket: &str, key: &str, ttl: Duration) -> Result<PresignedUrl, MediaError> {
        let signed_at = Utc::now();
        let config = PresigningConfig::expires_in(ttl).map_err(|e| MediaError::Presign(describe(&e)))?;
        let request = self
            .presigner
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| MediaError::Presign(describe(&e)))?;
        Ok(PresignedUrl {
            url: request.uri().to_owned(),
            expires_at: signed_at + ttl,
        })
    }
}
