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
use crate::ports::{MediaError, MediaReader, MediaStore, PresignedUrl};

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

impl MediaReader for S3MediaStore {
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

    async fn presign_get(&self, bucket: &str, key: &str, ttl: Duration) -> Result<PresignedUrl, MediaError> {
        presigned(&self.presigner, bucket, key, ttl).await
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
}

/// Reads media through presigned URLs and the HTTP client the functions link anyway, without the
/// S3 SDK: `submit` reads images only for the OpenAI-compatible API's base64 answers, and linking
/// the S3 client for that took its zip past 3,000,000 bytes (docs/benchmarks.md).
#[derive(Debug, Clone)]
pub struct PresignedMediaReader {
    /// Signs the reads of this function, for the endpoint it reaches.
    reads: Arc<Presigner>,
    /// Signs the URLs handed to clients, for the endpoint they reach.
    links: Arc<Presigner>,
    http: reqwest::Client,
}

/// How long a presigned URL this function reads through holds: it is used at once.
const READ_URL_TTL: Duration = Duration::from_secs(60);
/// How long reading one object may take.
const READ_TIMEOUT: Duration = Duration::from_secs(8);

impl PresignedMediaReader {
    pub fn from_sdk(sdk: &SdkConfig, presign_endpoint: Option<&str>) -> Result<Self, MediaError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .http1_only()
            .connect_timeout(Duration::from_secs(1))
            .timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| MediaError::Unavailable(format!("could not build the HTTP client: {e}")))?;
        Ok(Self {
            reads: Arc::new(Presigner::new(sdk, None)?),
            links: Arc::new(Presigner::new(sdk, presign_endpoint)?),
            http,
        })
    }
}

impl MediaReader for PresignedMediaReader {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, MediaError> {
        let (url, _) = self.reads.presign_get(bucket, key, READ_URL_TTL, Utc::now()).await?;
        let unavailable =
            |e: reqwest::Error| MediaError::Unavailable(format!("could not read {key}: {}", e.without_url()));
        let response = self.http.get(url).send().await.map_err(unavailable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(MediaError::Unavailable(format!(
                "could not read {key}: S3 answered {status}"
            )));
        }
        response.bytes().await.map_err(unavailable)
    }

    async fn presign_get(&self, bucket: &str, key: &str, ttl: Duration) -> Result<PresignedUrl, MediaError> {
        presigned(&self.links, bucket, key, ttl).await
    }
}

/// A URL `presigner` signs for `ttl`, or less if its credentials expire sooner.
async fn presigned(presigner: &Presigner, bucket: &str, key: &str, ttl: Duration) -> Result<PresignedUrl, MediaError> {
    let signed_at = Utc::now();
    let (url, lifetime) = presigner.presign_get(bucket, key, ttl, signed_at).await?;
    Ok(PresignedUrl {
        url,
        expires_at: signed_at + lifetime,
    })
}
