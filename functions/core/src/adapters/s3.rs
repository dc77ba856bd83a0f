//! Media objects in a private S3 bucket, written, read and removed with requests we sign
//! ourselves (adapters/s3_signer.rs) and send through the HTTP client every function links
//! anyway, rather than through the S3 SDK's client (docs/benchmarks.md).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use bytes::Bytes;
use chrono::Utc;
use reqwest::Method;

use super::s3_signer::{S3Request, S3Signer};
use crate::ports::{MediaError, MediaReader, MediaStore, PresignedUrl};

#[derive(Debug, Clone)]
pub struct S3MediaStore {
    /// Signs this function's own requests, for the endpoint it reaches.
    own: Arc<S3Signer>,
    /// Signs the URLs handed to clients, for the endpoint they reach, which may not be ours.
    links: Arc<S3Signer>,
    http: reqwest::Client,
    bucket: String,
}

/// How long a presigned URL this function reads through holds: it is used at once.
const READ_URL_TTL: Duration = Duration::from_secs(60);
/// How long one request may take: it carries an image of up to `MAX_OUTPUT_BYTES`, and a failed
/// one is tried again inside generate's 30 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);

impl S3MediaStore {
    /// Reaches storage at the SDK's endpoint; signs URLs for `presign_endpoint` if given (a client
    /// may reach storage at another address than the functions do).
    pub fn from_sdk(
        sdk: &SdkConfig,
        bucket: impl Into<String>,
        presign_endpoint: Option<&str>,
    ) -> Result<Self, MediaError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .http1_only()
            .connect_timeout(Duration::from_secs(1))
            .timeout(REQUEST_TIMEOUT)
            // As the SDK: S3 answers a wrong region with a redirect, which must fail.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MediaError::Unavailable(format!("could not build the HTTP client: {e}")))?;
        Ok(Self {
            own: Arc::new(S3Signer::new(sdk, None)?),
            links: Arc::new(S3Signer::new(sdk, presign_endpoint)?),
            http,
            bucket: bucket.into(),
        })
    }

    /// Sends `operation` (`method`) on `key` of our bucket, signed, with `headers` and `body`.
    async fn send(
        &self,
        (method, operation): (Method, &str),
        key: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(), MediaError> {
        let request = S3Request {
            method: method.as_str(),
            operation,
            bucket: &self.bucket,
            key,
            headers,
            body: &body,
        };
        let signed = self.own.sign(&request, SystemTime::now()).await?;
        let mut request = self.http.request(method.clone(), &signed.url).body(body);
        for (name, value) in &signed.headers {
            request = request.header(name, value);
        }
        answered(request, &format!("{method} {key}")).await.map(drop)
    }
}

/// The answer to `request`, or why there is none worth reading: `doing` names the request.
async fn answered(request: reqwest::RequestBuilder, doing: &str) -> Result<reqwest::Response, MediaError> {
    let failed = |reason: String| MediaError::Unavailable(format!("could not {doing}: {reason}"));
    let response = request.send().await.map_err(|e| failed(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // S3's refusal names itself in an XML body: <Error><Code>SlowDown</Code>…
    let text = response.text().await.unwrap_or_default();
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or("", |(code, _)| code);
    Err(failed(format!("S3 answered {status} {code}")))
}

impl MediaReader for S3MediaStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, MediaError> {
        let (url, _) = self.own.presign_get(bucket, key, READ_URL_TTL, Utc::now()).await?;
        let response = answered(self.http.get(url), &format!("read {key}")).await?;
        response
            .bytes()
            .await
            .map_err(|e| MediaError::Unavailable(format!("could not read {key}: {}", e.without_url())))
    }

    async fn presign_get(&self, bucket: &str, key: &str, ttl: Duration) -> Result<PresignedUrl, MediaError> {
        presigned(&self.links, bucket, key, ttl).await
    }
}

impl MediaStore for S3MediaStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), MediaError> {
        let headers = [("content-type", content_type)];
        self.send((Method::PUT, "PutObject"), key, &headers, body).await
    }

    async fn delete(&self, key: &str) -> Result<(), MediaError> {
        self.send((Method::DELETE, "DeleteObject"), key, &[], Bytes::new())
            .await
    }
}

/// A URL `presigner` signs for `ttl`, or less if its credentials expire sooner.
async fn presigned(presigner: &S3Signer, bucket: &str, key: &str, ttl: Duration) -> Result<PresignedUrl, MediaError> {
    let signed_at = Utc::now();
    let (url, lifetime) = presigner.presign_get(bucket, key, ttl, signed_at).await?;
    Ok(PresignedUrl {
        url,
        expires_at: signed_at + lifetime,
    })
}
