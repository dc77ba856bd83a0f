//! What our code adds on top of the AWS calls it makes, against the emulators (`AWS_ENDPOINT_URL`,
//! and `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local): each handler beside the same SDK calls
//! issued directly, measured in interleaved rounds (written to `criterion/interleaved.json` in
//! the target folder); what the rate limit check adds to a submit; an image write through our
//! own signed request beside the SDK's `PutObject`; and, with criterion, the cost of presigning
//! one URL. `scripts/bench.sh` runs it and reads the medians.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::presigning::PresigningConfig;
use criterion::{Criterion, criterion_group, criterion_main};
use lambda_http::http::{Method, header};
use lambda_http::{Body, Request};
use mediagen::adapters::aws;
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::adapters::{dynamodb::DynamoJobStore, s3::S3MediaStore, sqs::SqsJobQueue};
use mediagen::domain::generation::RequestPolicy;
use mediagen::domain::ids::{JobId, MediaId};
use mediagen::domain::keys::{ApiKey, Owner};
use mediagen::domain::quota::QuotaDefaults;
use mediagen::entrypoints::http::{OnFirstUse, content::ContentApi, status::StatusApi, submit::SubmitApi};
use mediagen::entrypoints::views::FileLinks;
use mediagen::entrypoints::{http, sqs};
use mediagen::ports::{JobStore, MediaReader, MediaStore};
use mediagen::runtime::provision::{Resources, provision};
use mediagen::services::auth::Authenticator;
use mediagen::services::cancel::CancelService;
use mediagen::services::content::ContentService;
use mediagen::services::generate::{GenerateSettings, Generator};
use mediagen::services::keys::{KeyAdmin, LimitChanges};
use mediagen::services::read::ReadService;
use mediagen::services::submit::SubmitService;
use mediagen::services::webhooks::Notifier;
use tokio::runtime::Runtime;

const BODY: &str = r#"{"prompt":"a lighthouse on a cliff at dusk","width":512,"height":512,"seed":7}"#;
const TTL: Duration = Duration::from_secs(900);
/// The image the write bench stores: about a 512 px PNG of the local model.
const IMAGE_BYTES: usize = 256 * 1024;

struct Fixture {
    sdk: SdkConfig,
    resources: Resources,
    queue_url: String,
    job_id: JobId,
    media_id: MediaId,
}

/// The key every bench request carries; registered in each bench table, and then cached by
/// the handlers' authenticator as in a warm function.
const KEY: &str = "mgk_benchbenchbenchbenchbenchbench12";

fn request(method: Method, path: &str, body: &str) -> Request {
    lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::from(body.to_owned()))
        .expect("request")
}

/// A fresh table, queue and bucket; answers their names and the queue's URL.
async fn stack(sdk: &SdkConfig) -> (Resources, String) {
    let suffix = format!("{:08x}", fastrand::u32(..));
    let resources = Resources {
        table: format!("bench-{suffix}"),
        queue: format!("bench-{suffix}"),
        dead_letter_queue: format!("bench-{suffix}-dlq"),
        bucket: format!("bench-{suffix}"),
        max_receive_count: 5,
        visibility_timeout_seconds: 180,
        webhooks_queue: format!("bench-{suffix}-webhooks"),
        webhooks_dead_letter_queue: format!("bench-{suffix}-webhooks-dlq"),
        webhooks_max_receive_count: 20,
        webhooks_visibility_timeout_seconds: 180,
    };
    let provisioned = provision(sdk, &resources).await.expect("provision");
    KeyAdmin::new(DynamoJobStore::new(aws::dynamodb(sdk), &resources.table))
        .create(
            Owner::parse("bench").expect("owner"),
            Some(ApiKey::parse(KEY).expect("key")),
        )
        .await
        .expect("register the bench key");
    // The bench measures the cost of the count, not the limit: it makes thousands of requests a minute.
    let lifted = LimitChanges {
        creates_per_minute: Some(u32::MAX),
        others_per_minute: Some(u32::MAX),
        concurrent_waits: None,
    };
    KeyAdmin::new(DynamoJobStore::new(aws::dynamodb(sdk), &resources.table))
        .set_limits(&KEY[..12], lifted)
        .await
        .expect("lift the bench key's limits");
    (resources, provisioned.queue_url)
}

async fn fixture() -> Fixture {
    // The emulators, as the functions find them (scripts/lib.sh, `aws_env`).
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL: the emulator's address; run scripts/bench.sh");
    let sdk = aws::loader()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .load()
        .await;
    let (resources, queue_url) = stack(&sdk).await;

    // One finished job to read back.
    let (store, queue, media) = adapters(&sdk, &resources, &queue_url);
    let submit = submit_api(store.clone(), queue.clone(), media.clone());
    let answer = http::submit::handle(&submit, request(Method::POST, "/media/generate", BODY)).await;
    let job: serde_json::Value = serde_json::from_slice(answer.body().as_ref()).expect("submit answer");
    let job_id = JobId::parse(job["job_id"].as_str().expect("job id")).expect("job id");
    let generator = Generator::new(
        store.clone(),
        queue,
        media,
        LocalModel,
        Notifier::off(),
        GenerateSettings::new(5, Duration::from_secs(86_400)),
    );
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = Some("bench".into());
    record.body = Some(serde_json::json!({ "job_id": job_id.to_string() }).to_string());
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![record];
    let mut context = lambda_runtime::Context::default();
    context.deadline = (chrono::Utc::now() + chrono::Duration::seconds(60)).timestamp_millis() as u64;
    sqs::handle(&generator, lambda_runtime::LambdaEvent::new(event, context)).await;
    let done = store.job(job_id).await.expect("job").expect("job exists");
    Fixture {
        sdk,
        resources,
        queue_url,
        job_id,
        media_id: done.media_ids[0],
    }
}

/// The bench's jobs have no `webhook_url`, so no webhook would be queued for them either way.
fn submit_api(
    store: DynamoJobStore,
    queue: SqsJobQueue,
    media: S3MediaStore,
) -> SubmitApi<DynamoJobStore, SqsJobQueue, S3MediaStore> {
    SubmitApi {
        auth: Authenticator::new(store.clone()),
        submit: SubmitService::new(
            store.clone(),
            queue.clone(),
            Notifier::off(),
            policy(),
            Duration::from_secs(86_400),
            // The bench's jobs are never run: its owner's quota must hold them all.
            QuotaDefaults { max_active: u32::MAX },
        ),
        cancel: CancelService::new(store.clone(), queue, Notifier::off()),
        reads: ReadService::new(store.clone()),
        content: ContentService::new(store, media, TTL),
        links: OnFirstUse::ready(links()),
    }
}

fn links() -> FileLinks {
    FileLinks { signer: None, ttl: TTL }
}

fn policy() -> RequestPolicy {
    RequestPolicy {
        catalogue: mediagen::domain::catalogue::Catalogue::parse(
            mediagen::domain::catalogue::BUILT_IN,
            &[mediagen::domain::catalogue::Provider::Local],
        )
        .unwrap(),
        allow_local_urls: false,
    }
}

fn adapters(sdk: &SdkConfig, resources: &Resources, queue_url: &str) -> (DynamoJobStore, SqsJobQueue, S3MediaStore) {
    (
        DynamoJobStore::new(aws::dynamodb(sdk), &resources.table),
        SqsJobQueue::new(aws::sqs(sdk), queue_url),
        S3MediaStore::from_sdk(sdk, &resources.bucket, None).expect("media store"),
    )
}

/// Warm-up calls of each side before a measurement, and rounds of it.
const WARM_UP_CALLS: usize = 20;
const ROUNDS: usize = 40;
/// Calls of one side in a round.
const CALLS: usize = 10;

/// The median time of one call of `a` and of `b`, in µs, measured in alternating rounds of
/// `CALLS` calls, the side that goes first swapped every round (a b, b a, a b...), so that neither
/// the order nor the emulators' warming up or filling up favours one side (docs/benchmarks.md,
/// "Method"). The median is of the rounds' means.
async fn interleaved(mut a: impl AsyncFnMut(), mut b: impl AsyncFnMut()) -> (f64, f64) {
    for _ in 0..WARM_UP_CALLS {
        a().await;
        b().await;
    }
    let (mut a_rounds, mut b_rounds) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for round in 0..ROUNDS {
        for a_turn in [round % 2 == 0, round % 2 == 1] {
            let start = Instant::now();
            for _ in 0..CALLS {
                if a_turn { a().await } else { b().await }
            }
            let per_call = start.elapsed().as_secs_f64() * 1e6 / CALLS as f64;
            if a_turn {
                a_rounds.push(per_call)
            } else {
                b_rounds.push(per_call)
            }
        }
    }
    (median(a_rounds), median(b_rounds))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

/// A job item of the size and shape `submit` writes.
fn job_item() -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: u64| AttributeValue::N(v.to_string());
    let id = JobId::new().to_string();
    HashMap::from([
        ("pk".to_owned(), s(&format!("JOB#{id}"))),
        ("job_id".to_owned(), s(&id)),
        ("owner".to_owned(), s("bench")),
        ("gsi1pk".to_owned(), s("OWNER#bench")),
        ("gsi1sk".to_owned(), s(&format!("2026-11-24T10:00:00.000Z#{id}"))),
        ("gsi2pk".to_owned(), s("UNSENT")),
        ("gsi2sk".to_owned(), s(&format!("2026-11-24T10:00:00.000Z#{id}"))),
        ("status".to_owned(), s("queued")),
        ("prompt".to_owned(), s("a lighthouse on a cliff at dusk")),
        ("model".to_owned(), s("local")),
        ("width".to_owned(), n(512)),
        ("height".to_owned(), n(512)),
        ("num_outputs".to_owned(), n(1)),
        ("seed".to_owned(), n(7)),
        ("output_format".to_owned(), s("png")),
        ("attempts".to_owned(), n(0)),
        ("created_at".to_owned(), s("2026-11-24T10:00:00.000Z")),
        ("updated_at".to_owned(), s("2026-11-24T10:00:00.000Z")),
        ("media_ids".to_owned(), AttributeValue::L(Vec::new())),
        ("ttl".to_owned(), n(1_900_000_000)),
    ])
}

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    let fx = runtime.block_on(fixture());
    let (store, _, media) = adapters(&fx.sdk, &fx.resources, &fx.queue_url);
    let dynamodb = aws::dynamodb(&fx.sdk);
    let sqs = aws::sqs(&fx.sdk);
    let s3 = aws::s3(&fx.sdk);
    // moto slows down as a table and queue fill up: each submit bench writes to its own, fresh.
    let (handler_stack, direct_stack) = runtime.block_on(async { (stack(&fx.sdk).await, stack(&fx.sdk).await) });
    let (handler_store, handler_queue, _) = adapters(&fx.sdk, &handler_stack.0, &handler_stack.1);
    let submit = submit_api(handler_store, handler_queue, media.clone());
    let content = ContentApi {
        auth: Authenticator::new(store.clone()),
        content: ContentService::new(store.clone(), media.clone(), TTL),
        links: OnFirstUse::ready(links()),
    };
    let reads = StatusApi {
        auth: Authenticator::new(store.clone()),
        reads: ReadService::new(store.clone()),
        links: OnFirstUse::ready(links()),
        webhook_secrets: OnFirstUse::ready(None),
        openapi: http::status::LazyBody::new(Box::new(String::new)),
        models: mediagen::entrypoints::views::model_list(&Default::default()),
        quota_defaults: QuotaDefaults::default(),
    };
    let status_path = format!("/media/status/{}", fx.job_id);
    let content_path = format!("/media/content/{}", fx.media_id);
    let media_key = format!("media/{}/0.png", fx.job_id);

    // The calls each handler makes, issued directly: the key's request count first (the key
    // itself is cached, as in a warm function), then the route's own.
    let count = async |class: &str| {
        let window = chrono::Utc::now().timestamp() / 60 * 60;
        dynamodb
            .update_item()
            .table_name(&fx.resources.table)
            .key("pk", AttributeValue::S(format!("RATE#bench#{class}#{window}")))
            .update_expression("ADD requests :one SET #ttl = if_not_exists(#ttl, :ttl)")
            .condition_expression("attribute_not_exists(requests) OR requests < :limit")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(u32::MAX.to_string()))
            .expression_attribute_values(":ttl", AttributeValue::N((window + 120).to_string()))
            .send()
            .await
            .expect("count");
    };
    // A submit's calls after its count: the job's slot in its owner's quota, the job with its
    // unsent mark, its message, the mark cleared.
    let submit_calls = async || {
        let item = job_item();
        let key = item["pk"].clone();
        dynamodb
            .update_item()
            .table_name(&direct_stack.0.table)
            .key("pk", AttributeValue::S("QUOTA#bench".into()))
            .update_expression("ADD active :job, images_2026_12 :one, microdollars_2026_12 :none")
            .condition_expression("attribute_not_exists(active) OR size(active) < :max")
            .expression_attribute_values(":job", AttributeValue::Ss(vec![JobId::new().to_string()]))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":none", AttributeValue::N("0".into()))
            .expression_attribute_values(":max", AttributeValue::N(u32::MAX.to_string()))
            .send()
            .await
            .expect("quota");
        dynamodb
            .put_item()
            .table_name(&direct_stack.0.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .expect("put");
        sqs.send_message()
            .queue_url(&direct_stack.1)
            .message_body(format!("{{\"job_id\":\"{}\"}}", JobId::new()))
            .send()
            .await
            .expect("send");
        dynamodb
            .update_item()
            .table_name(&direct_stack.0.table)
            .key("pk", key)
            .update_expression("REMOVE gsi2pk, gsi2sk")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .expect("mark sent");
    };
    let measured = runtime.block_on(async {
        let submit_handler = async || {
            let answer = http::submit::handle(&submit, request(Method::POST, "/media/generate", BODY)).await;
            assert_eq!(answer.status(), 202);
        };
        let submit_direct = async || {
            count("create").await;
            submit_calls().await;
        };
        let status_handler = async || {
            let answer = http::status::handle(&reads, request(Method::GET, &status_path, "")).await;
            assert_eq!(answer.status(), 200);
        };
        let status_direct = async || {
            count("other").await;
            dynamodb
                .get_item()
                .table_name(&fx.resources.table)
                .key("pk", AttributeValue::S(format!("JOB#{}", fx.job_id)))
                .consistent_read(true)
                .send()
                .await
                .expect("get");
        };
        let content_handler = async || {
            let answer = http::content::handle(&content, request(Method::GET, &content_path, "")).await;
            assert_eq!(answer.status(), 302);
        };
        let content_direct = async || {
            count("other").await;
            dynamodb
                .get_item()
                .table_name(&fx.resources.table)
                .key("pk", AttributeValue::S(format!("MEDIA#{}", fx.media_id)))
                .consistent_read(true)
                .send()
                .await
                .expect("get");
            let config = PresigningConfig::expires_in(TTL).expect("ttl");
            black_box(
                s3.get_object()
                    .bucket(&fx.resources.bucket)
                    .key(&media_key)
                    .presigned(config)
                    .await
                    .expect("presign"),
            );
        };
        let submit = interleaved(submit_handler, submit_direct).await;
        let status = interleaved(status_handler, status_direct).await;
        let content = interleaved(content_handler, content_direct).await;
        // What the rate limit check adds to a submit, beside one round trip of its kind alone.
        let without_count = async || submit_calls().await;
        let check = interleaved(submit_direct, without_count).await;
        let lone = interleaved(async || count("create").await, async || count("other").await).await;
        // generate's image write (adapters/s3.rs) beside the SDK client it replaced, as configured
        // before (aws::s3): the same bytes to the same key.
        let image = bytes::Bytes::from(vec![7u8; IMAGE_BYTES]);
        let put_key = format!("media/{}/put.png", fx.job_id);
        let put_ours = async || media.put(&put_key, image.clone(), "image/png").await.expect("put");
        let put_sdk = async || {
            s3.put_object()
                .bucket(&fx.resources.bucket)
                .key(&put_key)
                .content_type("image/png")
                .body(image.clone().into())
                .send()
                .await
                .expect("put");
        };
        let put = interleaved(put_ours, put_sdk).await;
        serde_json::json!({
            "submit": {"handler_us": submit.0, "direct_us": submit.1},
            "status": {"handler_us": status.0, "direct_us": status.1},
            "content": {"handler_us": content.0, "direct_us": content.1},
            "limit_check": {"with_us": check.0, "without_us": check.1, "round_trip_us": lone.0},
            "media_put": {"ours_us": put.0, "sdk_us": put.1, "bytes": IMAGE_BYTES},
        })
    });
    let out = std::path::Path::new(&std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("criterion")
        .join("interleaved.json");
    std::fs::create_dir_all(out.parent().expect("a folder")).expect("the criterion folder");
    std::fs::write(&out, measured.to_string()).expect("write the interleaved medians");
    println!("interleaved medians, µs a call: {measured}");

    let mut group = c.benchmark_group("presign");
    group.bench_function("get_object", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                media
                    .presign_get(&fx.resources.bucket, &media_key, TTL)
                    .await
                    .expect("presign"),
            );
        })
    });
    group.finish();
}

criterion_group!(handler_benches, benches);
criterion_main!(handler_benches);
