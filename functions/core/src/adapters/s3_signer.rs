//! S3 requests signed without the S3 SDK, whose client our functions no longer link: it spent
//! about a fifth of a function's start building its endpoint rules (docs/benchmarks.md).
//! - Presigned GETs, signed here directly: the SDK's presigner runs a whole request pipeline
//!   (endpoint rules, identity cache, interceptors) and spends about 25 µs per URL on it, while
//!   the signature itself is a hash and five HMACs. Checked against the AWS documentation's
//!   example and against the SDK's own presigned URLs in the tests below.
//! - Writes and deletes, signed in their headers by aws-sigv4, the SDK's own signer, with S3's
//!   settings; the body's SHA-256 goes with them, and S3 refuses a body that does not match it.
//!   Checked against the SDK's own signed requests in the tests below.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::ports::MediaError;

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Where objects are addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Addressing {
    /// `https://<bucket>.s3.<region>.<partition's domain>/<key>`, as the SDK addresses AWS; a
    /// bucket whose name has dots, which no wildcard certificate covers, at
    /// `https://s3.<region>.<partition's domain>/<bucket>/<key>`.
    VirtualHosted { suffix: String },
    /// `<base>/<bucket>/<key>`: emulators, and any endpoint override.
    PathStyle { base: String, host: String },
}

/// Signs S3 requests for one endpoint with the function's credentials.
#[derive(Debug)]
pub struct S3Signer {
    credentials: Option<SharedCredentialsProvider>,
    region: String,
    addressing: Addressing,
    cached: Mutex<Option<Credentials>>,
}

impl S3Signer {
    /// Signs for `endpoint_override` if given, else for the SDK's endpoint (if set), else AWS.
    pub fn new(sdk: &SdkConfig, endpoint_override: Option<&str>) -> Result<Self, MediaError> {
        let region = sdk
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| MediaError::Presign("no AWS region configured".into()))?;
        let addressing = match endpoint_override.or(sdk.endpoint_url()) {
            Some(endpoint) => path_style(endpoint)?,
            None => Addressing::VirtualHosted {
                suffix: format!("s3.{region}.{}", partition_domain(&region)),
            },
        };
        Ok(Self {
            credentials: sdk.credentials_provider(),
            region,
            addressing,
            cached: Mutex::new(None),
        })
    }

    async fn credentials(&self, now: SystemTime) -> Result<Credentials, MediaError> {
        let fresh = |c: &Credentials| c.expiry().is_none_or(|expiry| expiry > now + REFRESH_BEFORE_EXPIRY);
        if let Some(credentials) = self.lock().as_ref().filter(|c| fresh(c)) {
            return Ok(credentials.clone());
        }
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| MediaError::Presign("no AWS credentials configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| MediaError::Presign(format!("no AWS credentials: {e}")))?;
        *self.lock() = Some(credentials.clone());
        Ok(credentials)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Credentials>> {
        self.cached.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A URL that GETs `bucket/key` for `ttl` from `now`, and how long it really works: no longer
    /// than the credentials it is signed with (a role's expire within hours), whatever it says.
    pub async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(String, Duration), MediaError> {
        let credentials = self.credentials(now.into()).await?;
        let ttl = match credentials.expiry() {
            Some(expiry) => ttl.min(expiry.duration_since(now.into()).unwrap_or_default()),
            None => ttl,
        };
        let object = self.locate(bucket, key);
        let query = signed_query(
            &Signing {
                access_key_id: credentials.access_key_id(),
                secret_access_key: credentials.secret_access_key(),
                session_token: credentials.session_token(),
                region: &self.region,
            },
            &object.host,
            &object.path,
            ttl,
            now,
            &[("x-id", "GetObject")],
        );
        Ok((format!("{}{}?{query}", object.origin, object.path), ttl))
    }

    /// `request` signed at `now`: its URL, and its headers with the signature's added.
    pub async fn sign(&self, request: &S3Request<'_>, now: SystemTime) -> Result<SignedRequest, MediaError> {
        let failed = |e: &dyn std::fmt::Display| MediaError::Presign(format!("could not sign a request: {e}"));
        let identity = Identity::from(self.credentials(now).await?);
        let object = self.locate(request.bucket, request.key);
        let url = format!("{}{}?x-id={}", object.origin, object.path, request.operation);
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| failed(&e))?
            .into();
        let signable = SignableRequest::new(
            request.method,
            &url,
            request.headers.iter().copied(),
            SignableBody::Bytes(request.body),
        )
        .map_err(|e| failed(&e))?;
        let (signature, _) = sign(signable, &params).map_err(|e| failed(&e))?.into_parts();
        let headers = request
            .headers
            .iter()
            .copied()
            .chain(signature.headers())
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Ok(SignedRequest { url, headers })
    }

    /// Where `bucket/key` is reached.
    fn locate(&self, bucket: &str, key: &str) -> Located {
        match &self.addressing {
            Addressing::VirtualHosted { suffix } if bucket.contains('.') => Located {
                origin: format!("https://{suffix}"),
                host: suffix.clone(),
                path: format!("/{}/{}", encode_path(bucket), encode_path(key)),
            },
            Addressing::VirtualHosted { suffix } => {
                let host = format!("{bucket}.{suffix}");
                Located {
                    origin: format!("https://{host}"),
                    host,
                    path: format!("/{}", encode_path(key)),
                }
            }
            Addressing::PathStyle { base, host } => Located {
                origin: base.clone(),
                host: host.clone(),
                path: format!("/{}/{}", encode_path(bucket), encode_path(key)),
            },
        }
    }
}

/// An object's address: scheme and authority, the `Host` it is signed for, and its path.
struct Located {
    origin: String,
    host: String,
    path: String,
}

/// An S3 request on one object, to be signed in its headers.
#[derive(Debug, Clone, Copy)]
pub struct S3Request<'a> {
    pub method: &'a str,
    /// The operation, named in the URL as the SDK names it (`x-id=PutObject`).
    pub operation: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// A request signed in its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// The domain of the AWS partition a region belongs to (the SDK's partitions, by their region
/// patterns).
fn partition_domain(region: &str) -> &'static str {
    const PARTITIONS: [(&str, &str); 6] = [
        ("cn-", "amazonaws.com.cn"),
        ("us-iso-", "c2s.ic.gov"),
        ("us-isob-", "sc2s.sgov.gov"),
        ("us-isof-", "csp.hci.ic.gov"),
        ("eu-isoe-", "cloud.adc-e.uk"),
        ("eusc-", "amazonaws.eu"),
    ];
    PARTITIONS
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("amazonaws.com", |(_, domain)| domain)
}

fn path_style(endpoint: &str) -> Result<Addressing, MediaError> {
    let url = url::Url::parse(endpoint).map_err(|e| MediaError::Presign(format!("bad endpoint {endpoint}: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| MediaError::Presign(format!("endpoint {endpoint} has no host")))?;
    // The Host header carries the port only when it is not the scheme's default.
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok(Addressing::PathStyle {
        base: format!("{}://{host}{}", url.scheme(), url.path().trim_end_matches('/')),
        host,
    })
}

struct Signing<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    session_token: Option<&'a str>,
    region: &'a str,
}

/// The query string of a presigned GET, signature included. `extra` parameters are signed too.
fn signed_query(
    signing: &Signing<'_>,
    host: &str,
    path: &str,
    ttl: Duration,
    now: DateTime<Utc>,
    extra: &[(&str, &str)],
) -> String {
    let date = now.format("%Y%m%d").to_string();
    let timestamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{date}/{}/s3/aws4_request", signing.region);
    let credential = format!("{}/{scope}", signing.access_key_id);
    let expires = ttl.as_secs().to_string();
    let mut parameters: Vec<(&str, String)> = vec![
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".into()),
        ("X-Amz-Credential", encode(&credential)),
        ("X-Amz-Date", timestamp.clone()),
        ("X-Amz-Expires", expires),
        ("X-Amz-SignedHeaders", "host".into()),
    ];
    if let Some(token) = signing.session_token {
        parameters.push(("X-Amz-Security-Token", encode(token)));
    }
    parameters.extend(extra.iter().map(|(name, value)| (*name, encode(value))));
    parameters.sort();
    let mut query = String::new();
    for (name, value) in &parameters {
        if !query.is_empty() {
            query.push('&');
        }
        let _ = write!(query, "{name}={value}");
    }

    let canonical_request = format!("GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", signing.secret_access_key).as_bytes(), date.as_bytes());
    for part in [signing.region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    format!("{query}&X-Amz-Signature={signature}")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// SigV4's URI encoding: everything but the unreserved characters.
fn encode(value: &str) -> String {
    encode_except(value, b"")
}

/// The same for a path, whose slashes stay.
fn encode_path(value: &str) -> String {
    encode_except(value, b"/")
}

fn encode_except(value: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::presigning::PresigningConfig;
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use chrono::TimeZone;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// The example of "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)"
    /// in the Amazon S3 documentation.
    #[test]
    fn matches_the_aws_documentation_example() {
        let signing = Signing {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            session_token: None,
            region: "us-east-1",
        };
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let query = signed_query(
            &signing,
            "examplebucket.s3.amazonaws.com",
            "/test.txt",
            Duration::from_secs(86_400),
            now,
            &[],
        );
        assert!(
            query.ends_with("X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
            "{query}"
        );
    }

    fn parts(url: &str) -> (String, BTreeMap<String, String>) {
        let url = url::Url::parse(url).unwrap();
        let base = format!("{}://{}{}", url.scheme(), url.host_str().unwrap(), url.path());
        let base = match url.port() {
            Some(port) => base.replacen(
                url.host_str().unwrap(),
                &format!("{}:{port}", url.host_str().unwrap()),
                1,
            ),
            None => base,
        };
        (
            base,
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    async fn compare(endpoint: Option<&str>, token: Option<&str>) {
        compare_in("eu-west-1", "media-bucket", endpoint, token).await;
    }

    async fn compare_in(region: &str, bucket: &str, endpoint: Option<&str>, token: Option<&str>) {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "secret/with+chars",
            token.map(str::to_owned),
            None,
            "test",
        );
        let mut builder = SdkConfig::builder()
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .behavior_version(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let sdk = builder.build();
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 10, 11, 12).unwrap();
        let ttl = Duration::from_secs(900);
        let key = "media/0192e5a0-7b1c-7c3d-8e9f-0123456789ab/0 (copy).png";

        let (ours, lifetime) = S3Signer::new(&sdk, None)
            .unwrap()
            .presign_get(bucket, key, ttl, now)
            .await
            .unwrap();
        assert_eq!(lifetime, ttl);
        let config = PresigningConfig::builder()
            .start_time(now.into())
            .expires_in(ttl)
            .build()
            .unwrap();
        let theirs = crate::adapters::aws::s3(&sdk)
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await
            .unwrap();
        assert_eq!(
            parts(&ours),
            parts(theirs.uri()),
            "\nours:   {ours}\ntheirs: {}",
            theirs.uri()
        );
    }

    #[tokio::test]
    async fn matches_the_sdk_on_aws() {
        compare(None, None).await;
        compare(None, Some("session/token+value==")).await;
    }

    #[tokio::test]
    async fn matches_the_sdk_in_other_partitions_and_for_buckets_with_dots() {
        compare_in("cn-north-1", "media-bucket", None, None).await;
        compare_in("us-gov-west-1", "media-bucket", None, None).await;
        compare_in("us-iso-east-1", "media-bucket", None, None).await;
        compare_in("us-isob-east-1", "media-bucket", None, None).await;
        compare_in("eusc-de-east-1", "media-bucket", None, None).await;
        compare_in("eu-west-1", "media.example.com", None, None).await;
        compare_in("cn-northwest-1", "media.example.cn", None, Some("token")).await;
    }

    #[tokio::test]
    async fn matches_the_sdk_against_an_emulator() {
        compare(Some("http://127.0.0.1:4566"), None).await;
        compare(Some("http://localhost.localstack.cloud:4566/"), Some("token")).await;
    }

    /// Role credentials expire: a URL signed with them stops working then, whatever its
    /// `X-Amz-Expires`, so it says no more, and its lifetime is reported as that.
    #[tokio::test]
    async fn a_url_lives_no_longer_than_its_credentials() {
        let now = Utc::now();
        let expiry = std::time::SystemTime::from(now) + Duration::from_secs(600);
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), Some(expiry), "test");
        let sdk = SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let (url, lifetime) = S3Signer::new(&sdk, None)
            .unwrap()
            .presign_get("b", "k", Duration::from_secs(900), now)
            .await
            .unwrap();
        assert!(lifetime <= Duration::from_secs(600), "{lifetime:?}");
        let expires = parts(&url).1["X-Amz-Expires"].parse::<u64>().unwrap();
        assert!(expires <= 600, "{url}");
    }

    /// One request the SDK sent.
    #[derive(Debug)]
    struct Sent {
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
    }

    /// What the SDK sent, each answered 200 without a body.
    #[derive(Debug, Clone, Default)]
    struct Captured(Arc<Mutex<Vec<Sent>>>);

    impl HttpClient for Captured {
        fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    impl HttpConnector for Captured {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let headers = request
                .headers()
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
            self.0.lock().unwrap().push(Sent {
                method: request.method().to_owned(),
                uri: request.uri().to_owned(),
                headers,
            });
            HttpConnectorFuture::ready(Ok(HttpResponse::new(
                StatusCode::try_from(200).unwrap(),
                SdkBody::empty(),
            )))
        }
    }

    /// Our signature of the request the SDK made for `operation`, signed at the SDK's moment
    /// with the headers the SDK signed, beside the SDK's own.
    async fn signatures_of<F, Fut>(region: &str, endpoint: Option<&str>, body: &[u8], operation: F) -> (String, String)
    where
        F: FnOnce(aws_sdk_s3::Client) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret/with+chars", Some("token".into()), None, "test");
        let captured = Captured::default();
        let mut builder = SdkConfig::builder()
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .http_client(captured.clone())
            .behavior_version(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let sdk = builder.build();
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(endpoint.is_some())
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .build();
        operation(aws_sdk_s3::Client::from_conf(config)).await;
        let Sent { method, uri, headers } = captured.0.lock().unwrap().pop().unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let theirs = header("authorization");
        let signed_names = theirs
            .split("SignedHeaders=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        // The headers aws-sigv4 adds itself are left to it, as they are for our requests.
        let given: Vec<(String, String)> = signed_names
            .split(';')
            .filter(|name| !["host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"].contains(name))
            .map(|name| (name.to_owned(), header(name)))
            .collect();
        let given: Vec<(&str, &str)> = given.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let at = chrono::NaiveDateTime::parse_from_str(&header("x-amz-date"), "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
        let url = url::Url::parse(&uri).unwrap();
        let (bucket, key) = match endpoint {
            Some(_) => url.path()[1..].split_once('/').unwrap(),
            None => (url.host_str().unwrap().split('.').next().unwrap(), &url.path()[1..]),
        };
        let key = percent_decode(key);
        let ours = S3Signer::new(&sdk, None)
            .unwrap()
            .sign(
                &S3Request {
                    method: &method,
                    operation: url.query().unwrap().trim_start_matches("x-id="),
                    bucket,
                    key: &key,
                    headers: &given,
                    body,
                },
                at.into(),
            )
            .await
            .unwrap();
        assert_eq!(ours.url, uri);
        let ours = ours
            .headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap();
        (ours, theirs)
    }

    fn percent_decode(value: &str) -> String {
        url::form_urlencoded::parse(format!("k={}", value.replace('+', "%2B")).as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned()
    }

    #[tokio::test]
    async fn signs_puts_and_deletes_as_the_sdk_does() {
        let key = "media/0192e5a0-7b1c-7c3d-8e9f-0123456789ab/0 (copy)+~.png";
        let body = b"\x89PNG not really a picture";
        for (region, endpoint) in [
            ("eu-west-1", None),
            ("cn-north-1", None),
            ("us-east-1", Some("http://127.0.0.1:4566")),
        ] {
            let (ours, theirs) = signatures_of(region, endpoint, body, async |s3| {
                s3.put_object()
                    .bucket("media-bucket")
                    .key(key)
                    .content_type("image/png")
                    .body(body.to_vec().into())
                    .send()
                    .await
                    .unwrap();
            })
            .await;
            assert_eq!(ours, theirs, "PUT in {region} at {endpoint:?}");
            let (ours, theirs) = signatures_of(region, endpoint, b"", async |s3| {
                s3.delete_object().bucket("media-bucket").key(key).send().await.unwrap();
            })
            .await;
            assert_eq!(ours, theirs, "DELETE in {region} at {endpoint:?}");
        }
    }

    #[test]
    fn encodes_as_sigv4_asks() {
        assert_eq!(encode("a/b c+d=e~f"), "a%2Fb%20c%2Bd%3De~f");
        assert_eq!(encode_path("media/x y/0.png"), "media/x%20y/0.png");
    }
}
