//! SSM Parameter Store's `GetParameter`, the one SSM call we make: once per cold start, for a
//! secret. It is one SigV4-signed JSON request through reqwest rather than aws-sdk-ssm, whose
//! client added about 150 kB to generate's zip for that single call (docs/benchmarks.md).

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde_json::{Value, json};

use crate::domain::secret::Secret;

/// The decrypted value of a parameter (a `SecureString`): where deployed secrets live, rather than
/// in a function's environment. Its endpoint is the SDK's (`AWS_ENDPOINT_URL`), else SSM's in the
/// configured region. Errors name the parameter, never the value.
pub async fn parameter(sdk: &SdkConfig, name: &str) -> Result<Secret, String> {
    let failed = |reason: String| format!("could not read the parameter {name}: {reason}");
    let region = sdk
        .region()
        .ok_or_else(|| failed("no AWS region configured".into()))?
        .to_string();
    let endpoint = match sdk.endpoint_url() {
        Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
        None => format!("https://ssm.{region}.amazonaws.com"),
    };
    let credentials = sdk
        .credentials_provider()
        .ok_or_else(|| failed("no AWS credentials configured".into()))?
        .provide_credentials()
        .await
        .map_err(|e| failed(super::describe_error(&e)))?;
    let identity = Identity::from(credentials);
    let body = json!({ "Name": name, "WithDecryption": true }).to_string();
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "AmazonSSM.GetParameter"),
    ];
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("ssm")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        &endpoint,
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| failed(e.to_string()))?;
    let (signature, _) = sign(signable, &params).map_err(|e| failed(e.to_string()))?.into_parts();

    let mut request = reqwest::Client::builder()
        .timeout(super::aws::OPERATION_TIMEOUT)
        .build()
        .map_err(|e| failed(super::describe_error(&e)))?
        .post(&endpoint)
        .body(body);
    for (header, value) in headers.into_iter().chain(signature.headers()) {
        request = request.header(header, value);
    }
    let response = request.send().await.map_err(|e| failed(super::describe_error(&e)))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| failed(super::describe_error(&e)))?;
    // A refusal reads `{"__type": "...#ParameterNotFound", "message": "..."}`; some servers spell
    // it `Message`, moto sends both. An answer reads `{"Parameter": {"Value": "..."}}`.
    let answer = serde_json::from_str::<Value>(&text);
    if !status.is_success() {
        let refusal = answer.unwrap_or_default();
        let field = |key: &str| refusal.get(key).and_then(Value::as_str);
        let kind = field("__type")
            .and_then(|kind| kind.rsplit('#').next())
            .unwrap_or("SSM refused");
        let message = field("message").or_else(|| field("Message")).unwrap_or_default();
        return Err(failed(format!("{kind} ({status}): {message}")));
    }
    answer
        .map_err(|_| failed("SSM's answer was not a parameter".into()))?
        .pointer("/Parameter/Value")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(Secret::new)
        .ok_or_else(|| format!("the parameter {name} holds no value"))
}
