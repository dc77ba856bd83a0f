//! The harness every module shares: real adapters against moto server, one fresh set of resources
//! per test so tests run in parallel without seeing each other's data.

use mediagen::domain::catalogue::{BUILT_IN, Catalogue, Provider};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use lambda_http::http::{Method, header};
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::{Context, LambdaEvent};
use mediagen::adapters::aws;
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::adapters::webhook::HttpWebhookSender;
use mediagen::adapters::{
    dynamodb::DynamoJobStore,
    s3::S3MediaStore,
    sqs::{SqsJobQueue, SqsWebhookQueue},
};
use mediagen::domain::file_urls::FileLinkSigner;
use mediagen::domain::generation::RequestPolicy;
use mediagen::domain::keys::{ApiKey, Owner};
use mediagen::domain::quota::QuotaDefaults;
use mediagen::domain::retry::Backoff;
use mediagen::domain::secret::Secret;
use mediagen::domain::webhook::MasterKey;
use mediagen::entrypoints::http::{OnFirstUse, content::ContentApi, status::StatusApi, submit::SubmitApi};
use mediagen::entrypoints::views::FileLinks;
use mediagen::ports::{ImageModel, JobQueue};
use mediagen::runtime::provision::{Provisioned, Resources, provision};
use mediagen::services::auth::Authenticator;
use mediagen::services::cancel::CancelService;
use mediagen::services::content::ContentService;
use mediagen::services::generate::{GenerateSettings, Generator};
use mediagen::services::keys::KeyAdmin;
use mediagen::services::read::ReadService;
use mediagen::services::submit::SubmitService;
use mediagen::services::sweep::{Sweeper, SweeperQueues};
use mediagen::services::webhooks::{Deliverer, Notifier, SigningKeys, WebhookSecrets};

pub const MAX_RECEIVE_COUNT: u32 = 3;
/// The owner every stack has a key for, and that key; requests carry it unless a test says
/// otherwise.
pub const OWNER: &str = "tester";
pub const KEY: &str = "mgk_testtesttesttesttesttesttesttest";
/// A second owner, to show that owners do not see each other's jobs.
pub const OTHER_OWNER: &str = "someone-else";
pub const OTHER_KEY: &str = "mgk_otherotherotherotherotherother12";
pub const RETENTION: Duration = Duration::from_secs(86_400);
/// The master key every test stack signs webhooks with.
pub const WEBHOOK_SECRET: &str = "whsec_dGVzdHMgb25seTogbmV2ZXIgYSByZWFsIHNlY3JldCE=";

/// The emulator's address, from `scripts/test.sh`.
pub fn endpoint() -> String {
    std::env::var("MEDIAGEN_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!("MEDIAGEN_TEST_ENDPOINT is not set: these tests need moto server; run scripts/test.sh")
    })
}

pub async fn sdk_config() -> SdkConfig {
    // The functions' defaults (timeouts; an HTTPS client of this test's runtime), pointed at the
    // emulators as the functions are: by AWS_ENDPOINT_URL, and AWS_ENDPOINT_URL_DYNAMODB when
    // DynamoDB Local runs (scripts/lib.sh, `aws_env`). An endpoint set here would override the second.
    assert_eq!(
        std::env::var("AWS_ENDPOINT_URL").ok(),
        Some(endpoint()),
        "AWS_ENDPOINT_URL must be the emulator's address; run scripts/test.sh"
    );
    aws::loader()
        .http_client(aws::fresh_http_client())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// One test's own table, queues and bucket on the emulator.
pub struct Stack {
    pub sdk: SdkConfig,
    pub resources: Resources,
    pub provisioned: Provisioned,
}

impl Stack {
    pub async fn new() -> Self {
        let sdk = sdk_config().await;
        let suffix = &format!("{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
        let resources = Resources {
            table: format!("jobs-{suffix}"),
            queue: format!("jobs-{suffix}"),
            dead_letter_queue: format!("jobs-{suffix}-dlq"),
            bucket: format!("media-{suffix}"),
            max_receive_count: MAX_RECEIVE_COUNT,
            visibility_timeout_seconds: 30,
            webhooks_queue: format!("webhooks-{suffix}"),
            webhooks_dead_letter_queue: format!("webhooks-{suffix}-dlq"),
            webhooks_max_receive_count: 20,
            webhooks_visibility_timeout_seconds: 30,
        };
        let provisioned = provision(&sdk, &resources).await.expect("provision the test stack");
        let stack = Stack {
            sdk,
            resources,
            provisioned,
        };
        let keys = KeyAdmin::new(stack.store());
        for (owner, key) in [(OWNER, KEY), (OTHER_OWNER, OTHER_KEY)] {
            let key = ApiKey::parse(key).expect("a test key");
            keys.create(Owner::parse(owner).expect("an owner"), Some(key))
                .await
                .expect("register the test key");
        }
        stack
    }

    pub fn store(&self) -> DynamoJobStore {
        DynamoJobStore::new(aws::dynamodb(&self.sdk), &self.resources.table)
    }

    pub fn queue(&self) -> SqsJobQueue {
        SqsJobQueue::new(aws::sqs(&self.sdk), &self.provisioned.queue_url)
    }

    pub fn webhooks(&self) -> SqsWebhookQueue {
        SqsWebhookQueue::new(aws::sqs(&self.sdk), &self.provisioned.webhooks_queue_url)
    }

    /// What queues the webhooks of final jobs, onto this stack's deliveries queue.
    pub fn notifier(&self) -> Notifier {
        Notifier::new(self.webhooks())
    }

    pub fn media(&self) -> S3MediaStore {
        S3MediaStore::from_sdk(&self.sdk, &self.resources.bucket, None).expect("media store")
    }

    pub fn policy(&self) -> RequestPolicy {
        RequestPolicy {
            catalogue: local_catalogue(),
            allow_local_urls: true,
        }
    }

    /// What the `submit` function serves, with this stack's adapters.
    pub fn submit_api(&self) -> SubmitApi<DynamoJobStore, SqsJobQueue, S3MediaStore> {
        self.submit_api_with_queue(self.queue())
    }

    pub fn submit_api_with_queue<Q: JobQueue + Clone>(&self, queue: Q) -> SubmitApi<DynamoJobStore, Q, S3MediaStore> {
        self.submit_api_on(self.store(), queue)
    }

    /// The same on `store` (a store on a client of its own).
    pub fn submit_api_on<Q: JobQueue + Clone>(
        &self,
        store: DynamoJobStore,
        queue: Q,
    ) -> SubmitApi<DynamoJobStore, Q, S3MediaStore> {
        SubmitApi {
            auth: Authenticator::new(store.clone()),
            submit: SubmitService::new(
                store.clone(),
                queue.clone(),
                self.notifier(),
                self.policy(),
                RETENTION,
                QuotaDefaults::default(),
            ),
            cancel: CancelService::new(store.clone(), queue, self.notifier()),
            reads: ReadService::new(store.clone()),
            content: ContentService::new(store, self.media(), Duration::from_secs(900)),
            links: OnFirstUse::ready(file_links()),
        }
    }

    /// The worker with this stack's adapters, retrying fast so that failure tests stay quick.
    pub fn generator<I: ImageModel>(&self, model: I) -> Generator<DynamoJobStore, SqsJobQueue, S3MediaStore, I> {
        self.generator_on(self.store(), model)
    }

    /// The same on `store`.
    pub fn generator_on<I: ImageModel>(
        &self,
        store: DynamoJobStore,
        model: I,
    ) -> Generator<DynamoJobStore, SqsJobQueue, S3MediaStore, I> {
        let mut settings = GenerateSettings::new(MAX_RECEIVE_COUNT, RETENTION);
        settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 3);
        Generator::new(store, self.queue(), self.media(), model, self.notifier(), settings)
    }

    /// The sweeper with this stack's adapters, and the local model (which has no runs to stop).
    pub fn sweeper(&self) -> Sweeper<DynamoJobStore, SqsJobQueue, S3MediaStore, LocalModel> {
        self.sweeper_with(LocalModel)
    }

    /// The sweeper with this stack's adapters and `model`.
    pub fn sweeper_with<I: ImageModel>(&self, model: I) -> Sweeper<DynamoJobStore, SqsJobQueue, S3MediaStore, I> {
        self.sweeper_sending_to(&self.provisioned.queue_url, model)
    }

    /// The sweeper with this stack's adapters and `model`, sending the jobs' messages to `jobs_queue_url`.
    pub fn sweeper_sending_to<I: ImageModel>(
        &self,
        jobs_queue_url: &str,
        model: I,
    ) -> Sweeper<DynamoJobStore, SqsJobQueue, S3MediaStore, I> {
        Sweeper::new(
            self.store(),
            SweeperQueues {
                dead_letters: SqsJobQueue::new(aws::sqs(&self.sdk), &self.provisioned.dead_letter_queue_url),
                jobs: SqsJobQueue::new(aws::sqs(&self.sdk), jobs_queue_url),
            },
            self.media(),
            model,
            self.notifier(),
            RETENTION,
        )
    }

    /// Receives the jobs queue's message until SQS moves it to the dead-letter queue (after
    /// `MAX_RECEIVE_COUNT` receives), then answers it as the dead-letter queue hands it over.
    pub async fn exhaust_to_dead_letters(&self) -> Vec<SqsMessage> {
        for _ in 0..MAX_RECEIVE_COUNT {
            assert_eq!(self.receive(0).await.len(), 1, "the job's message is on the jobs queue");
        }
        // The receive after the last allowed one moves it.
        assert!(self.receive(0).await.is_empty());
        let moved = self
            .receive_from(&self.provisioned.dead_letter_queue_url, "dead-letters", 30)
            .await;
        assert_eq!(moved.len(), 1, "SQS moved the message to the dead-letter queue");
        moved
    }

    /// The webhook sender with this stack's adapters; `allow_local` as `ALLOW_LOCAL_URLS`.
    pub fn deliverer(&self, allow_local: bool) -> Deliverer<DynamoJobStore, SqsWebhookQueue, HttpWebhookSender> {
        Deliverer::new(
            self.store(),
            self.webhooks(),
            HttpWebhookSender::new(allow_local, Duration::from_secs(5)).expect("the webhook client"),
            signing_keys(),
        )
    }

    /// What the `status` function serves.
    pub fn status_api(&self) -> StatusApi<DynamoJobStore> {
        StatusApi {
            auth: Authenticator::new(self.store()),
            reads: ReadService::new(self.store()),
            links: OnFirstUse::ready(file_links()),
            webhook_secrets: OnFirstUse::ready(Some(WebhookSecrets::new(self.store(), signing_keys()))),
            openapi: mediagen::entrypoints::http::status::LazyBody::new(Box::new(|| {
                mediagen::entrypoints::http::openapi::local_document().to_string()
            })),
            models: mediagen::entrypoints::views::model_list(&local_catalogue()),
            quota_defaults: QuotaDefaults::default(),
        }
    }

    /// What the `content` function serves, its links living `ttl`.
    pub fn content_api(&self, ttl: Duration) -> ContentApi<DynamoJobStore, S3MediaStore> {
        self.content_api_with_media(self.media(), ttl)
    }

    pub fn content_api_with_media(
        &self,
        media: S3MediaStore,
        ttl: Duration,
    ) -> ContentApi<DynamoJobStore, S3MediaStore> {
        ContentApi {
            auth: Authenticator::new(self.store()),
            content: ContentService::new(self.store(), media, ttl),
            links: OnFirstUse::ready(file_links()),
        }
    }

    /// Receives up to ten messages of the jobs queue, waiting briefly; as the event source
    /// mapping would.
    pub async fn receive(&self, visibility_timeout: i32) -> Vec<SqsMessage> {
        self.receive_from(
            &self.provisioned.queue_url,
            &self.provisioned.queue_arn,
            visibility_timeout,
        )
        .await
    }

    /// The same from the jobs dead-letter queue.
    pub async fn receive_dead_letters(&self, visibility_timeout: i32) -> Vec<SqsMessage> {
        self.receive_from(
            &self.provisioned.dead_letter_queue_url,
            "dead-letters",
            visibility_timeout,
        )
        .await
    }

    /// The same from the webhook deliveries queue.
    pub async fn receive_webhooks(&self, visibility_timeout: i32) -> Vec<SqsMessage> {
        self.receive_from(
            &self.provisioned.webhooks_queue_url,
            &self.provisioned.webhooks_queue_arn,
            visibility_timeout,
        )
        .await
    }

    async fn receive_from(&self, queue_url: &str, queue_arn: &str, visibility_timeout: i32) -> Vec<SqsMessage> {
        let output = aws::sqs(&self.sdk)
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(visibility_timeout)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let mut record = SqsMessage::default();
                record.message_id = m.message_id;
                record.receipt_handle = m.receipt_handle;
                record.body = m.body;
                record.attributes = m
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v))
                    .collect();
                record.event_source = Some("aws:sqs".into());
                record.event_source_arn = Some(queue_arn.to_owned());
                record
            })
            .collect()
    }

    /// Keys of the objects under a prefix of this stack's bucket.
    pub async fn object_keys(&self, prefix: &str) -> Vec<String> {
        aws::s3(&self.sdk)
            .list_objects_v2()
            .bucket(&self.resources.bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list objects")
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .collect()
    }
}

/// The owners' webhook signing keys of every test stack.
pub fn signing_keys() -> SigningKeys {
    SigningKeys::new(MasterKey::parse(&Secret::new(WEBHOOK_SECRET)).expect("the test webhook secret"))
}

/// An SQS event as Lambda hands it over, with a deadline a minute away.
pub fn sqs_event(records: Vec<SqsMessage>) -> LambdaEvent<SqsEvent> {
    sqs_event_due_in(records, Duration::from_secs(60))
}

/// An SQS event whose invocation ends `deadline` from now.
pub fn sqs_event_due_in(records: Vec<SqsMessage>, deadline: Duration) -> LambdaEvent<SqsEvent> {
    let mut event = SqsEvent::default();
    event.records = records;
    let mut context = Context::default();
    context.request_id = "test-request".into();
    context.deadline = (chrono::Utc::now().timestamp_millis() as u64) + deadline.as_millis() as u64;
    LambdaEvent::new(event, context)
}

/// A record whose body and receive count are set by hand.
pub fn record(message_id: &str, body: &str, receive_count: u32) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(message_id.into());
    record.body = Some(body.into());
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    record
}

/// File links as the local stack signs them.
pub fn file_links() -> FileLinks {
    FileLinks {
        signer: Some(FileLinkSigner::new(Secret::new("test file links"))),
        ttl: Duration::from_secs(900),
    }
}

/// A request with the key of [`OWNER`].
pub fn request(method: Method, path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request {
    request_as(KEY, method, path, content_type, body)
}

/// A GET of a path with a query, the query's parameters as API Gateway hands them over.
pub fn request_with_query(path_and_query: &str) -> Request {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let params: std::collections::HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    request(Method::GET, path, None, Body::Empty).with_query_string_parameters(params)
}

/// A request with the given `Authorization: Bearer` key.
pub fn request_as(key: &str, method: Method, path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(body.into()).expect("request")
}

/// `POST /media/generate` with a JSON body.
pub fn post_generate(body: impl Into<Body>) -> Request {
    request(Method::POST, "/media/generate", Some("application/json"), body)
}

pub fn json_of(response: &Response<Body>) -> serde_json::Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(serde_json::Value::Null)
}

/// Checks that the answer is a problem+json document of this status, and answers it.
pub fn assert_problem(response: &Response<Body>, status: u16) -> serde_json::Value {
    let problem = json_of(response);
    assert_eq!(response.status(), status, "{problem}");
    assert_eq!(
        header_of(response, "content-type"),
        Some("application/problem+json"),
        "{problem}"
    );
    assert_eq!(problem["status"], status, "{problem}");
    for key in ["type", "title", "detail"] {
        assert!(problem[key].is_string(), "{key} missing in {problem}");
    }
    problem
}

pub fn header_of<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The built-in catalogue's local models, as a local stack offers them.
pub fn local_catalogue() -> Catalogue {
    Catalogue::parse(BUILT_IN, &[Provider::Local]).unwrap()
}
