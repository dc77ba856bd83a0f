//! Fetching URLs that others gave us (model outputs) without letting them point us at our own
//! network (docs/design.md, "Failure rules"): every host, and every redirect's host, must resolve
//! to public addresses unless local URLs are allowed, checked on the very addresses connected to
//! (`adapters/outbound.rs`); bodies are capped in size and time.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{LOCATION, RETRY_AFTER};
use url::Url;

use super::outbound::{AddressCheck, address_check, check_url, client_builder, refusal};
use crate::domain::retry::Transient;

const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL may not be fetched: a private address, a bad scheme, too many redirects.
    #[error("refused to fetch {url}: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url} is larger than the {limit}-byte limit")]
    TooLarge { url: String, limit: u64 },
    /// The server answered with an error that another try will not change.
    #[error("{url} answered {status}")]
    Rejected { url: String, status: u16 },
    /// Throttling, a 5xx, a timeout, a broken connection: worth another try.
    #[error("could not fetch {url}: {reason}")]
    Unavailable {
        url: String,
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Transient for FetchError {
    fn is_transient(&self) -> bool {
        matches!(self, FetchError::Unavailable { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Fetcher {
    /// Follows no redirect by itself: each hop is checked here.
    http: reqwest::Client,
    allow_local: bool,
    check: AddressCheck,
    max_bytes: u64,
}

impl Fetcher {
    pub fn new(allow_local: bool, max_bytes: u64) -> Result<Self, reqwest::Error> {
        Self::with_check(allow_local, address_check(allow_local), max_bytes)
    }

    /// With another rule for which addresses may be reached (tests: loopback counts as public).
    pub fn with_check(allow_local: bool, check: AddressCheck, max_bytes: u64) -> Result<Self, reqwest::Error> {
        let http = client_builder(check).connect_timeout(Duration::from_secs(5)).build()?;
        Ok(Self {
            http,
            allow_local,
            check,
            max_bytes,
        })
    }

    /// GETs `url` and answers its body, following up to five checked redirects, within `timeout` overall.
    pub async fn get(&self, url: &Url, timeout: Duration) -> Result<Vec<u8>, FetchError> {
        tokio::time::timeout(timeout, self.get_unbounded(url))
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::Unavailable {
                    url: url.to_string(),
                    reason: format!("no complete answer within {timeout:?}"),
                    retry_after: None,
                })
            })
    }

    async fn get_unbounded(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            check_url(&current, self.allow_local, self.check).map_err(|refused| FetchError::Refused {
                url: current.to_string(),
                reason: refused.0,
            })?;
            let failed = |err: &reqwest::Error| match refusal(err) {
                Some(refused) => FetchError::Refused {
                    url: current.to_string(),
                    reason: refused.0,
                },
                None => FetchError::Unavailable {
                    url: current.to_string(),
                    reason: crate::adapters::describe_error(err),
                    retry_after: None,
                },
            };
            let unavailable = |reason: String| FetchError::Unavailable {
                url: current.to_string(),
                reason,
                retry_after: None,
            };
            let mut response = self.http.get(current.clone()).send().await.map_err(|e| failed(&e))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| unavailable(format!("{status} without a Location")))?;
                current = current.join(location).map_err(|e| FetchError::Refused {
                    url: current.to_string(),
                    reason: format!("bad redirect target: {e}"),
                })?;
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                return Err(FetchError::Unavailable {
                    url: current.to_string(),
                    reason: format!("answered {status}"),
                    retry_after: retry_after(response.headers()),
                });
            }
            if !status.is_success() {
                return Err(FetchError::Rejected {
                    url: current.to_string(),
                    status: status.as_u16(),
                });
            }
            let too_large = || FetchError::TooLarge {
                url: current.to_string(),
                limit: self.max_bytes,
            };
            if response.content_length().is_some_and(|length| length > self.max_bytes) {
                return Err(too_large());
            }
            // Counted as it arrives: a body without a Content-Length is cut off at the cap too.
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e))? {
                if bytes.len() as u64 + chunk.len() as u64 > self.max_bytes {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok(bytes);
        }
        Err(FetchError::Refused {
            url: url.to_string(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

/// A `Retry-After` in seconds, the form APIs use.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const SECOND: Duration = Duration::from_secs(5);

    fn url(server: &MockServer, path: &str) -> Url {
        Url::parse(&format!("{}{path}", server.uri())).unwrap()
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_local_urls_are_allowed() {
        let server = MockServer::start().await;
        Mock::given(path("/image.png"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(b"png".to_vec()))
            .mount(&server)
            .await;
        let strict = Fetcher::new(false, 1024).unwrap();
        let err = strict.get(&url(&server, "/image.png"), SECOND).await.unwrap_err();
        assert!(matches!(err, FetchError::Refused { .. }), "{err}");

        let local = Fetcher::new(true, 1024).unwrap();
        let fetched = local.get(&url(&server, "/image.png"), SECOND).await.unwrap();
        assert_eq!(fetched, b"png");
    }

    #[tokio::test]
    async fn private_reserved_and_metadata_addresses_are_refused() {
        let strict = Fetcher::new(false, 1024).unwrap();
        for raw in [
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/x",
            "https://127.0.0.1/x",
            "https://0.0.0.0/x",
            "https://192.0.0.1/x",
            "https://[::1]/x",
            "https://[::]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::127.0.0.1]/x",
            "https://[fc00::1]/x",
            "https://[fd12:3456::1]/x",
            "https://[fec0::1]/x",
            "https://[64:ff9b::7f00:1]/x",
            "https://[2002:7f00:1::1]/x",
            // A name: refused by the resolver, on the addresses it would connect to.
            "https://localhost/x",
            "http://example.com/x",
            "file:///etc/passwd",
        ] {
            let err = strict.get(&Url::parse(raw).unwrap(), SECOND).await.unwrap_err();
            assert!(matches!(err, FetchError::Refused { .. }), "{raw}: {err}");
        }
    }

    /// Loopback's 127.0.0.1 counts as public here, so that a test server can be the first hop.
    fn loopback_v4_is_public(ip: std::net::IpAddr) -> bool {
        ip == std::net::IpAddr::from([127, 0, 0, 1]) || crate::domain::network::is_public(ip)
    }

    #[tokio::test]
    async fn a_redirect_to_a_private_address_is_refused() {
        let server = MockServer::start().await;
        let port = server.address().port();
        let targets = [
            format!("http://[::1]:{port}/image.png"),
            format!("http://[::ffff:127.0.0.1]:{port}/image.png"),
            format!("http://0.0.0.0:{port}/image.png"),
            format!("http://10.0.0.1:{port}/image.png"),
            "http://169.254.169.254/latest/meta-data".to_owned(),
        ];
        for (n, target) in targets.iter().enumerate() {
            Mock::given(path(format!("/hop{n}")))
                .respond_with(ResponseTemplate::new(302).insert_header("location", target.as_str()))
                .mount(&server)
                .await;
        }
        Mock::given(path("/image.png"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(b"png".to_vec()))
            .mount(&server)
            .await;
        let fetcher = Fetcher::with_check(true, loopback_v4_is_public, 1024).unwrap();
        assert_eq!(fetcher.get(&url(&server, "/image.png"), SECOND).await.unwrap(), b"png");
        for (n, target) in targets.iter().enumerate() {
            let err = fetcher
                .get(&url(&server, &format!("/hop{n}")), SECOND)
                .await
                .unwrap_err();
            assert!(matches!(err, FetchError::Refused { .. }), "{target}: {err}");
        }
    }

    #[tokio::test]
    async fn a_body_without_a_length_is_cut_off_at_the_cap() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Chunked, with no Content-Length: only counting what arrives can stop it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ntransfer-encoding: chunked\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
            for _ in 0..64 {
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        });
        let fetcher = Fetcher::new(true, 4096).unwrap();
        let url = Url::parse(&format!("http://{address}/stream")).unwrap();
        let err = fetcher.get(&url, SECOND).await.unwrap_err();
        assert!(matches!(err, FetchError::TooLarge { limit: 4096, .. }), "{err}");
        server.abort();
    }

    #[tokio::test]
    async fn redirects_are_followed_and_checked() {
        let server = MockServer::start().await;
        Mock::given(path("/hop"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", "/image.png"))
            .mount(&server)
            .await;
        Mock::given(path("/image.png"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(b"png".to_vec()))
            .mount(&server)
            .await;
        Mock::given(path("/loop"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", "/loop"))
            .mount(&server)
            .await;
        let local = Fetcher::new(true, 1024).unwrap();
        assert_eq!(local.get(&url(&server, "/hop"), SECOND).await.unwrap(), b"png");
        let err = local.get(&url(&server, "/loop"), SECOND).await.unwrap_err();
        assert!(matches!(err, FetchError::Refused { .. }), "{err}");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_cut_off() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![0u8; 4096]))
            .mount(&server)
            .await;
        let local = Fetcher::new(true, 1024).unwrap();
        let err = local.get(&url(&server, "/big"), SECOND).await.unwrap_err();
        assert!(matches!(err, FetchError::TooLarge { limit: 1024, .. }), "{err}");
    }

    #[tokio::test]
    async fn server_errors_are_transient_and_client_errors_are_not() {
        let server = MockServer::start().await;
        Mock::given(path("/busy"))
            .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "7"))
            .mount(&server)
            .await;
        Mock::given(path("/gone"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        Mock::given(path("/slow"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;
        let local = Fetcher::new(true, 1024).unwrap();
        let busy = local.get(&url(&server, "/busy"), SECOND).await.unwrap_err();
        assert!(busy.is_transient());
        assert!(matches!(busy, FetchError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(7)));
        let gone = local.get(&url(&server, "/gone"), SECOND).await.unwrap_err();
        assert!(!gone.is_transient());
        let slow = local
            .get(&url(&server, "/slow"), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(slow.is_transient(), "{slow}");
    }
}
