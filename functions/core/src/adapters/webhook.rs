//! Webhook POSTs to the URLs clients gave (docs/design.md, "Webhooks"). The URL was checked at
//! submit, but its host may resolve elsewhere by now: it is resolved once here, refused if any
//! address is not public (unless local URLs are allowed), and the request goes to exactly the
//! addresses checked, so a second lookup cannot lead it into our network. No redirects, no proxy.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use url::Host;

use super::describe_error;
use crate::domain::network::is_public;
use crate::ports::{WebhookError, WebhookPost, WebhookSender};

#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    allow_local: bool,
    /// For the whole delivery: the lookup, the connection and the answer's head.
    timeout: Duration,
}

impl HttpWebhookSender {
    pub fn new(allow_local: bool, timeout: Duration) -> Self {
        Self { allow_local, timeout }
    }

    async fn post_unbounded(&self, post: &WebhookPost<'_>, shown: &str) -> Result<(), WebhookError> {
        let url = post.url;
        let refuse = |reason: &str| WebhookError::Refused {
            url: shown.to_owned(),
            reason: reason.to_owned(),
        };
        let unreachable = |reason: String| WebhookError::Unreachable {
            url: shown.to_owned(),
            reason,
        };
        match url.scheme() {
            "https" => {}
            "http" if self.allow_local => {}
            _ => return Err(refuse("only https URLs are called")),
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let (domain, addresses) = match url.host() {
            None => return Err(refuse("no host")),
            Some(Host::Ipv4(ip)) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Some(Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Some(Host::Domain(name)) => {
                let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                    .await
                    .map_err(|e| unreachable(format!("could not resolve the host: {e}")))?
                    .collect();
                (Some(name), addresses)
            }
        };
        if addresses.is_empty() {
            return Err(unreachable("the host resolves to no address".into()));
        }
        if !self.allow_local && !addresses.iter().all(|address| is_public(address.ip())) {
            return Err(refuse("the host resolves to a private, loopback or reserved address"));
        }

        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout);
        if let Some(domain) = domain {
            // Connect only to the addresses checked above; TLS still verifies the name.
            client = client.resolve_to_addrs(domain, &addresses);
        }
        let client = client
            .build()
            .map_err(|e| unreachable(describe_error(&e.without_url())))?;
        let mut request = client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "mediagen-webhooks")
            .body(post.body.to_vec());
        for (name, value) in post.headers {
            request = request.header(*name, value);
        }
        // The answer's body is never read: only its status counts.
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(describe_error(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(WebhookError::Rejected {
                url: shown.to_owned(),
                status: status.as_u16(),
            })
        }
    }
}

impl WebhookSender for HttpWebhookSender {
    async fn post(&self, post: &WebhookPost<'_>) -> Result<(), WebhookError> {
        // Only the origin goes into errors and logs: a webhook URL's path or query often carries
        // a token of the receiver's.
        let shown = post.url.origin().ascii_serialization();
        tokio::time::timeout(self.timeout, self.post_unbounded(post, &shown))
            .await
            .unwrap_or_else(|_| {
                Err(WebhookError::Unreachable {
                    url: shown.clone(),
                    reason: format!("no answer within {:?}", self.timeout),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TIMEOUT: Duration = Duration::from_secs(5);

    async fn send(sender: &HttpWebhookSender, raw: &str) -> Result<(), WebhookError> {
        let url = Url::parse(raw).unwrap();
        let headers = [("webhook-id", "msg_1".to_owned())];
        sender
            .post(&WebhookPost {
                url: &url,
                headers: &headers,
                body: b"{}",
            })
            .await
    }

    #[tokio::test]
    async fn private_loopback_and_metadata_hosts_are_refused() {
        let strict = HttpWebhookSender::new(false, TIMEOUT);
        for raw in [
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/hook",
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
            "https://[::ffff:192.168.0.1]/hook",
            "https://localhost/hook",
            "http://example.com/hook",
            "ftp://example.com/hook",
        ] {
            let err = send(&strict, raw).await.unwrap_err();
            assert!(matches!(err, WebhookError::Refused { .. }), "{raw}: {err}");
        }
    }

    #[tokio::test]
    async fn a_2xx_is_delivered_and_anything_else_is_not() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/ok"))
            .and(header("content-type", "application/json"))
            .and(header("webhook-id", "msg_1"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        Mock::given(path("/moved"))
            .respond_with(ResponseTemplate::new(302).insert_header("location", "/ok"))
            .mount(&server)
            .await;
        Mock::given(path("/broken"))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        Mock::given(path("/slow"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;
        let local = HttpWebhookSender::new(true, TIMEOUT);
        send(&local, &format!("{}/ok", server.uri())).await.unwrap();
        // A redirect is an answer, not a delivery: it is never followed.
        let moved = send(&local, &format!("{}/moved", server.uri())).await.unwrap_err();
        assert!(matches!(moved, WebhookError::Rejected { status: 302, .. }), "{moved}");
        let broken = send(&local, &format!("{}/broken", server.uri())).await.unwrap_err();
        assert!(matches!(broken, WebhookError::Rejected { status: 500, .. }), "{broken}");
        let impatient = HttpWebhookSender::new(true, Duration::from_millis(200));
        let slow = send(&impatient, &format!("{}/slow", server.uri())).await.unwrap_err();
        assert!(matches!(slow, WebhookError::Unreachable { .. }), "{slow}");
        assert_eq!(
            server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .filter(|r| r.url.path() == "/ok")
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn errors_show_the_origin_only() {
        let local = HttpWebhookSender::new(true, TIMEOUT);
        // Nothing listens on port 9 of loopback.
        let err = send(&local, "http://127.0.0.1:9/hook?token=receivers-secret")
            .await
            .unwrap_err();
        assert!(matches!(err, WebhookError::Unreachable { .. }), "{err}");
        assert!(!err.to_string().contains("receivers-secret"), "{err}");
        assert!(err.to_string().contains("http://127.0.0.1:9"), "{err}");
    }
}
