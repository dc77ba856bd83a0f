//! A small client of the mediagen HTTP API, as a user would write one.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, LOCATION};
use serde_json::Value;

use crate::Error;

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    /// Sent as `Authorization: Bearer` to the API, never to the presigned storage URLs.
    api_key: Option<String>,
}

/// One image of a finished job, downloaded.
pub struct Downloaded {
    pub media: Value,
    pub bytes: Vec<u8>,
}

impl ApiClient {
    pub fn new(base: &str, api_key: Option<&str>) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            api_key: api_key.map(str::to_owned),
        })
    }

    /// A request to the API at `path`, with the key.
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn get_json(&self, path: &str) -> Result<Value, Error> {
        let response = self.api(reqwest::Method::GET, path).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status != StatusCode::OK {
            return Err(format!("GET {path} answered {status}: {body}").into());
        }
        Ok(body)
    }

    /// Submits a job; answers the `202` body.
    pub async fn submit(&self, request: &Value) -> Result<Value, Error> {
        let response = self
            .api(reqwest::Method::POST, "/media/generate")
            .json(request)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status != StatusCode::ACCEPTED {
            return Err(format!("submit answered {status}: {body}").into());
        }
        Ok(body)
    }

    /// Asks for the job's cancel; answers the job as the cancel left it.
    pub async fn cancel(&self, job_id: &str) -> Result<Value, Error> {
        let response = self
            .api(reqwest::Method::POST, &format!("/media/jobs/{job_id}/cancel"))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("cancel answered {status}: {body}").into());
        }
        Ok(body)
    }

    /// The models the deployment offers (`GET /v1/models`).
    pub async fn models(&self) -> Result<Value, Error> {
        self.get_json("/v1/models").await
    }

    pub async fn status(&self, job_id: &str) -> Result<Value, Error> {
        self.get_json(&format!("/media/status/{job_id}")).await
    }

    pub async fn job(&self, job_id: &str) -> Result<Value, Error> {
        self.get_json(&format!("/media/jobs/{job_id}")).await
    }

    /// Polls the status until the job is final, calling `progress` whenever it changes.
    pub async fn wait(
        &self,
        job_id: &str,
        timeout: Duration,
        mut progress: impl FnMut(&Value),
    ) -> Result<Value, Error> {
        let started = Instant::now();
        let mut last = Value::Null;
        loop {
            let status = self.status(job_id).await?;
            if status["status"] != last["status"] || status["attempts"] != last["attempts"] {
                progress(&status);
            }
            if matches!(status["status"].as_str(), Some("succeeded" | "failed" | "canceled")) {
                return Ok(status);
            }
            if started.elapsed() > timeout {
                return Err(format!("job {job_id} still {} after {timeout:?}", status["status"]).into());
            }
            last = status;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Follows a media item's `content_url` (a redirect to a presigned URL) and downloads it.
    pub async fn download(&self, media: &Value) -> Result<Downloaded, Error> {
        let content_url = media["content_url"].as_str().ok_or("media without content_url")?;
        // The link is a path from the API's host: it already carries any stage prefix.
        let url = reqwest::Url::parse(&self.base)?.join(content_url)?;
        let mut request = self.http.get(url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await?;
        if response.status() != StatusCode::FOUND {
            return Err(format!("content answered {} instead of a redirect", response.status()).into());
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("redirect without Location")?
            .to_owned();
        let image = self.http.get(&location).header(ACCEPT, "image/*").send().await?;
        if image.status() != StatusCode::OK {
            return Err(format!("the presigned URL answered {}", image.status()).into());
        }
        Ok(Downloaded {
            media: media.clone(),
            bytes: image.bytes().await?.to_vec(),
        })
    }
}
