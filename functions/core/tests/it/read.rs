//! `status` and `content` through their handlers, against the real store and bucket.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{Stack, assert_problem, header_of, json_of, post_generate, request, sqs_event};
use aws_sdk_dynamodb::config::interceptors::{BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use aws_smithy_runtime_api::box_error::BoxError;
use lambda_http::http::{Method, header};
use mediagen::adapters::dynamodb::DynamoJobStore;
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::domain::ids::{JobId, MediaId};
use mediagen::entrypoints::http;
use mediagen::entrypoints::sqs;
use mediagen::ports::{JobStore, MediaError, MediaReader, MediaStore};
use serde_json::{Value, json};

/// Submits a job through the real handler and runs `generate` on its message.
async fn finished_job(stack: &Stack) -> JobId {
    finished_job_of(stack, 2).await
}

/// The same, with `outputs` images.
async fn finished_job_of(stack: &Stack, outputs: u32) -> JobId {
    let submit = stack.submit_api();
    let body = json!({"prompt": "a quiet harbour", "width": 256, "height": 256, "num_outputs": outputs, "seed": 3});
    let response = http::submit::handle(&submit, post_generate(body.to_string())).await;
    let job_id = JobId::parse(json_of(&response)["job_id"].as_str().unwrap()).unwrap();
    let generator = stack.generator(LocalModel);
    sqs::handle(&generator, sqs_event(stack.receive(30).await)).await;
    job_id
}

#[tokio::test]
async fn status_is_light_and_says_when_to_poll_again() {
    let stack = Stack::new().await;
    let submit = stack.submit_api();
    let response = http::submit::handle(&submit, post_generate(r#"{"prompt":"a"}"#)).await;
    let job_id = json_of(&response)["job_id"].as_str().unwrap().to_owned();

    let response = http::status::handle(
        &stack.status_api(),
        request(Method::GET, &format!("/media/status/{job_id}"), None, ""),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header_of(&response, "retry-after"), Some("1"));
    let body = json_of(&response);
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["attempts", "created_at", "job_id", "status", "updated_at"]);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["attempts"], 0);
}

#[tokio::test]
async fn a_finished_job_shows_its_media_and_timings() {
    let stack = Stack::new().await;
    let job_id = finished_job(&stack).await;

    let response = http::status::handle(
        &stack.status_api(),
        request(Method::GET, &format!("/media/status/{job_id}"), None, ""),
    )
    .await;
    assert_eq!(json_of(&response)["status"], "succeeded");
    assert_eq!(header_of(&response, "retry-after"), None, "no polling hint once final");

    let response = http::status::handle(
        &stack.status_api(),
        request(Method::GET, &format!("/media/jobs/{job_id}"), None, ""),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = json_of(&response);
    assert_eq!(body["prompt"], "a quiet harbour");
    assert_eq!(body["seed"], 3);
    assert_eq!(body["output_format"], "png");
    assert!(body["started_at"].is_string() && body["completed_at"].is_string());
    assert!(body["timings"]["queued_ms"].is_i64() && body["timings"]["generation_ms"].is_i64());
    let media = body["media"].as_array().unwrap();
    assert_eq!(media.len(), 2);
    for (index, item) in media.iter().enumerate() {
        assert_eq!(item["index"], index);
        assert_eq!(item["content_type"], "image/png");
        assert_eq!(
            (item["width"].as_u64(), item["height"].as_u64()),
            (Some(256), Some(256))
        );
        assert!(item["bytes"].as_u64().unwrap() > 0);
        let media_id = item["media_id"].as_str().unwrap();
        assert_eq!(item["content_url"], format!("/media/content/{media_id}"));
    }
}

#[tokio::test]
async fn content_redirects_to_a_presigned_url_or_answers_json() {
    let stack = Stack::new().await;
    let job_id = finished_job(&stack).await;
    let job = stack.store().job(job_id).await.unwrap().unwrap();
    let media_id = job.media_ids[0];
    let service = stack.content_api(Duration::from_secs(900));

    let response = http::content::handle(
        &service,
        request(Method::GET, &format!("/media/content/{media_id}"), None, ""),
    )
    .await;
    assert_eq!(response.status(), 302);
    let location = header_of(&response, "location").unwrap().to_owned();
    assert!(location.starts_with(&crate::helpers::endpoint()), "{location}");
    assert!(
        location.contains(&format!("/{}/media/{job_id}/0.png?", stack.resources.bucket)),
        "path-style: {location}"
    );
    assert!(location.contains("X-Amz-Expires=900"), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let max_age: u64 = header_of(&response, "cache-control")
        .unwrap()
        .strip_prefix("private, max-age=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age < 900 && max_age > 600, "{max_age}");

    // The presigned URL serves the image, with its content type.
    let download = reqwest::get(&location).await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()[header::CONTENT_TYPE], "image/png");
    let image = image::load_from_memory(&download.bytes().await.unwrap()).unwrap();
    assert_eq!((image.width(), image.height()), (256, 256));

    let mut json_request = request(Method::GET, &format!("/media/content/{media_id}"), None, "");
    json_request
        .headers_mut()
        .insert(header::ACCEPT, "application/json".parse().unwrap());
    let response = http::content::handle(&service, json_request).await;
    assert_eq!(response.status(), 200);
    let body = json_of(&response);
    assert_eq!(body["content_type"], "image/png");
    assert!(body["url"].as_str().unwrap().contains("X-Amz-Signature="));
    let expires_at = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let lifetime = expires_at.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((880..=900).contains(&lifetime), "{lifetime}");
}

#[tokio::test]
async fn presigned_urls_can_name_another_endpoint_than_the_functions_use() {
    let stack = Stack::new().await;
    let job_id = finished_job(&stack).await;
    let job = stack.store().job(job_id).await.unwrap().unwrap();
    let media = mediagen::adapters::s3::S3MediaStore::from_sdk(
        &stack.sdk,
        &stack.resources.bucket,
        Some("http://localhost.localstack.cloud:4566"),
    )
    .unwrap();
    let api = stack.content_api_with_media(media, Duration::from_secs(60));
    let response = http::content::handle(
        &api,
        request(Method::GET, &format!("/media/content/{}", job.media_ids[0]), None, ""),
    )
    .await;
    let location = header_of(&response, "location").unwrap();
    assert!(
        location.starts_with(&format!(
            "http://localhost.localstack.cloud:4566/{}/media/",
            stack.resources.bucket
        )),
        "{location}"
    );
}

#[tokio::test]
async fn ids_and_routes_are_checked() {
    let stack = Stack::new().await;
    let reads = stack.status_api();
    let content = stack.content_api(Duration::from_secs(900));
    let unknown_job = JobId::new();
    let unknown_media = MediaId::new();

    let cases = [
        (Method::GET, "/media/status/not-an-id".to_owned(), 400, "malformed-id"),
        (Method::GET, "/media/jobs/12345".to_owned(), 400, "malformed-id"),
        (Method::GET, format!("/media/status/{unknown_job}"), 404, "not-found"),
        (Method::GET, format!("/media/jobs/{unknown_job}"), 404, "not-found"),
        (
            Method::DELETE,
            format!("/media/status/{unknown_job}"),
            405,
            "method-not-allowed",
        ),
        (Method::GET, "/media/nothing-here".to_owned(), 404, "no-route"),
        (Method::GET, "/".to_owned(), 404, "no-route"),
    ];
    for (method, path, status, kind) in cases {
        let response = http::status::handle(&reads, request(method.clone(), &path, None, "")).await;
        let problem = assert_problem(&response, status);
        assert_eq!(
            problem["type"],
            format!("urn:mediagen:problem:{kind}"),
            "{method} {path}"
        );
    }

    let cases = [
        (Method::GET, "/media/content/nope".to_owned(), 400),
        (Method::GET, format!("/media/content/{unknown_media}"), 404),
        (Method::POST, format!("/media/content/{unknown_media}"), 405),
    ];
    for (method, path, status) in cases {
        let response = http::content::handle(&content, request(method.clone(), &path, None, "")).await;
        assert_problem(&response, status);
    }
}

/// Watches a store's calls to DynamoDB: records each request's operation and body, and turns
/// every BatchGetItem answer of more than one item into a partial one, the rest handed back as
/// unprocessed keys, as DynamoDB may answer under load.
#[derive(Debug, Clone, Default)]
struct Watch {
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Intercept for Watch {
    fn name(&self) -> &'static str {
        "watch"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let operation = target.rsplit('.').next().unwrap_or_default().to_owned();
        let body = match request.body().bytes() {
            Some(bytes) => serde_json::from_slice(bytes)?,
            None => Value::Null,
        };
        self.requests.lock().unwrap().push((operation, body));
        Ok(())
    }

    fn modify_before_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error_mut() else {
            return Ok(());
        };
        let Some(output) = output.downcast_mut::<BatchGetItemOutput>() else {
            return Ok(());
        };
        for (table, items) in output.responses.iter_mut().flatten() {
            if items.len() < 2 {
                continue;
            }
            let rest = items
                .drain(1..)
                .map(|item| HashMap::from([("pk".to_owned(), item["pk"].clone())]))
                .collect();
            let rest = KeysAndAttributes::builder().set_keys(Some(rest)).build()?;
            output
                .unprocessed_keys
                .get_or_insert_default()
                .insert(table.clone(), rest);
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_jobs_media_are_read_consistently_and_whole_from_partial_batch_answers() {
    let stack = Stack::new().await;
    let job_id = finished_job_of(&stack, 4).await;
    let watch = Watch::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&stack.sdk)
        .interceptor(watch.clone())
        .build();
    let store = DynamoJobStore::new(aws_sdk_dynamodb::Client::from_conf(config), &stack.resources.table);

    let job = store.job(job_id).await.unwrap().unwrap();
    assert_eq!(job.media_ids.len(), 4, "{job:?}");
    let media = store.job_media(&job).await.unwrap();
    assert_eq!(media.iter().map(|m| m.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
    let ids: HashSet<MediaId> = media.iter().map(|m| m.id).collect();
    assert_eq!(ids, job.media_ids.iter().copied().collect());
    assert_eq!(store.media(job.media_ids[3]).await.unwrap().unwrap().index, 3);

    // Each answer held one item and handed the rest back: four reads, every one consistent
    // (a read right after the job's commit must see its media items).
    let requests = watch.requests.lock().unwrap().clone();
    let batches: Vec<&Value> = requests
        .iter()
        .filter(|(operation, _)| operation == "BatchGetItem")
        .map(|(_, body)| body)
        .collect();
    assert_eq!(batches.len(), 4, "{batches:?}");
    for body in batches {
        for keys in body["RequestItems"].as_object().unwrap().values() {
            assert_eq!(
                keys["ConsistentRead"], true,
                "an eventually consistent batch read: {body}"
            );
        }
    }
    let gets: Vec<&Value> = requests
        .iter()
        .filter(|(operation, _)| operation == "GetItem")
        .map(|(_, body)| body)
        .collect();
    assert_eq!(gets.len(), 2, "{requests:?}");
    for body in gets {
        assert_eq!(body["ConsistentRead"], true, "an eventually consistent read: {body}");
    }

    // Through the handler, right after the job's completion.
    let response = http::status::handle(
        &stack.status_api(),
        request(Method::GET, &format!("/media/jobs/{job_id}"), None, ""),
    )
    .await;
    assert_eq!(json_of(&response)["media"].as_array().unwrap().len(), 4);
}

/// The media store signs its own requests (adapters/s3_signer.rs): what it writes, under a key
/// that needs encoding, is there with its content type, reads back, and is gone once removed.
#[tokio::test]
async fn the_media_store_writes_reads_and_removes_objects_with_requests_it_signs() {
    let stack = Stack::new().await;
    let media = stack.media();
    let bucket = &stack.resources.bucket;
    let key = "media/x y+z/0 (copy)~.png";
    let bytes = bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n not really a picture");
    media.put(key, bytes.clone(), "image/png").await.unwrap();

    let s3 = mediagen::adapters::aws::s3(&stack.sdk);
    let stored = s3.head_object().bucket(bucket).key(key).send().await.unwrap();
    assert_eq!(stored.content_type(), Some("image/png"));
    assert_eq!(stored.content_length(), Some(bytes.len() as i64));
    assert_eq!(media.get(bucket, key).await.unwrap(), bytes);

    media.delete(key).await.unwrap();
    let missing = media.get(bucket, key).await.unwrap_err();
    assert!(
        matches!(missing, MediaError::Unavailable(ref m) if m.contains("404")),
        "{missing:?}"
    );
    media.delete(key).await.expect("removing what is gone is no error");
}
