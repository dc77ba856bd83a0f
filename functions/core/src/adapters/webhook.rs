//! Webhook POSTs to the URLs clients gave (docs/design.md, "Webhooks"). The URL was checked at
//! submit, but its host may resolve elsewhere by now: it is resolved once, at the connection,
//! refused if any address is not public (unless local URLs are allowed), and the request goes to
//! exactly the addresses checked (`adapters/outbound.rs`). No redirects, no proxy.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, USER_AGENT};

use super::describe_error;
use super::outbound::{address_check, check_url, client_builder, refusal};
use crate::ports::{WebhookError, WebhookPost, WebhookSender};

#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    http: reqwest::Client,
    allow_local: bool,
    /// For the whole delivery: the lookup, the connection and the answer's head.
    timeout: Duration,
}

impl HttpWebhookSender {
    pub fn new(allow_local: bool, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = client_builder(address_check(allow_local)).timeout(timeout).build()?;
        Ok(Self {
            http,
            allow_local,
            timeout,
        })
    }

    async fn post_unbounded(&self, post: &WebhookPost<'_>, shown: &str) -> Result<(), WebhookError> {
        let url = post.url;
        let refuse = |reason: String| WebhookError::Refused {
            url: shown.to_owned(),
            reason,
        };
        check_url(url, self.allow_local, address_check(self.allow_local)).map_err(|refused| refuse(refused.0))?;
        let mut request = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "mediagen-webhooks")
            .body(post.body.to_vec());
        for (name, value) in post.headers {
            request = request.header(*name, value);
        }
        // The answer's body is never read: only its status counts.
        let response = request.send().await.map_err(|e| match refusal(&e) {
            Some(refused) => refuse(refused.0),
            None => WebhookError::Unreachable {
                url: shown.to_owned(),
                reason: describe_error(&e.without_url()),
            },
        })?;
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
        let strict = HttpWebhookSender::new(false, TIMEOUT).unwrap();
        for raw in [
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/hook",
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
            "https://[::ffff:192.168.0.1]/hook",
            "https://[fd00::1]/hook",
            "https://[64:ff9b::a00:1]/hook",
            "https://0.0.0.0/hook",
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
        let local = HttpWebhookSender::new(true, TIMEOUT).unwrap();
        send(&local, &format!("{}/ok", server.uri())).await.unwrap();
        // A redirect is an answer, not a delivery: it is never followed.
        let moved = send(&local, &format!("{}/moved", server.uri())).await.unwrap_err();
        assert!(matches!(moved, WebhookError::Rejected { status: 302, .. }), "{moved}");
        let broken = send(&local, &format!("{}/broken", server.uri())).await.unwrap_err();
        assert!(matches!(broken, WebhookError::Rejected { status: 500, .. }), "{broken}");
        let impatient = HttpWebhookSender::new(true, Duration::from_millis(200)).unwrap();
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
        let local = HttpWebhookSender::new(true, TIMEOUT).unwrap();
        // Nothing listens on port 9 of loopback.
        let err = send(&local, "http://127.0.0.1:9/hook?token=receivers-secret")
            .await
            .unwrap_err();
        assert!(matches!(err, WebhookError::Unreachable { .. }), "{err}");
        assert!(!err.to_string().contains("receivers-secret"), "{err}");
        assert!(err.to_string().contains("http://127.0.0.1:9"), "{err}");
    }
}
