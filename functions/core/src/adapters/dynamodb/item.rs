//! How jobs, media, API keys, idempotency keys and webhook signing states map onto DynamoDB
//! items, and the keys they are stored under. Jobs and API keys also carry the attributes of the `by_owner` index (`gsi1pk`,
//! `gsi1sk`): an owner's jobs newest first, and every key in one partition.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::domain::generation::GenerateRequest;
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::ids::{JobId, MediaId};
use crate::domain::job::{Interface, Job, JobError, MediaItem, ModelAttempt, ProviderSlot};
use crate::domain::keys::{KeyHash, KeyRecord, Owner};
use crate::domain::limits::{KeyLimits, RouteClass, Window};
use crate::domain::quota::{Month, Quota, Usage};
use crate::domain::timestamp;
use crate::domain::webhook::{Previous, SigningState};
use crate::ports::StoreError;

pub(super) type Item = HashMap<String, AttributeValue>;

/// The key of a job's item.
pub(super) fn job_pk(id: JobId) -> AttributeValue {
    AttributeValue::S(format!("JOB#{id}"))
}

/// The key of a media item.
pub(super) fn media_pk(id: MediaId) -> AttributeValue {
    AttributeValue::S(format!("MEDIA#{id}"))
}

/// The key of an API key's item.
pub(super) fn key_pk(hash: &KeyHash) -> AttributeValue {
    AttributeValue::S(format!("KEY#{}", hash.as_str()))
}

/// The key of an idempotency record: keys are scoped per owner.
pub(super) fn idempotency_pk(owner: &Owner, key: &IdempotencyKey) -> AttributeValue {
    AttributeValue::S(format!("IDEMPOTENCY#{owner}#{}", key.as_str()))
}

/// The key of an owner's webhook signing state: an item of its own, so that nothing else about
/// the owner is written with it.
pub(super) fn signing_pk(owner: &Owner) -> AttributeValue {
    AttributeValue::S(format!("WEBHOOK_SECRET#{owner}"))
}

/// The index partition of an owner's jobs.
pub(super) fn owner_partition(owner: &Owner) -> AttributeValue {
    AttributeValue::S(format!("OWNER#{owner}"))
}

/// The index sort key of a job: its id, which orders by time (UUIDv7).
pub(super) fn job_sort_key(id: JobId) -> AttributeValue {
    AttributeValue::S(id.to_string())
}

/// The index partition every API key is in.
pub(super) const KEYS_PARTITION: &str = "KEYS";
pub(super) const INDEX: &str = "by_owner";
/// The status a job ended in, written by every final write and by nothing else. `by_owner`
/// projects it rather than `status`, so that a job writes the index twice, at its creation and
/// at its end, and never at a claim (docs/design.md, "Stored data").
pub(super) const FINAL_STATUS: &str = "final_status";
/// The attributes `by_owner` projects besides the keys: a job's final status, which a listing
/// filters on before it reads the jobs themselves, and what `KeyStore::all` reads of a key. A
/// write that changes none of them (a claim, a retry, a run noted, a mark) does not write the
/// index. `provision.rs` and template.yaml project the same (tests/template checks the template).
pub const OWNER_INDEX_ATTRIBUTES: [&str; 9] = [
    "final_status",
    "owner",
    "created_at",
    "key_hash",
    "prefix",
    "revoked_at",
    "creates_per_minute",
    "others_per_minute",
    "concurrent_waits",
];
/// The sparse index of jobs whose message is not known to have been sent: `gsi2pk` is
/// [`unsent_partition`], `gsi2sk` [`unsent_sort_key`]; both removed once the message is.
pub(super) const UNSENT_INDEX: &str = "unsent";

/// The unsent index's sort key: creation time first, so that the sweep asks for the jobs older
/// than a time; then the id, so that equal times still order.
pub(super) fn unsent_sort_key(created_at: DateTime<Utc>, id: JobId) -> AttributeValue {
    AttributeValue::S(format!("{}#{id}", timestamp::render(created_at)))
}

/// The creation time an unsent index entry's sort key begins with.
pub(super) fn unsent_created_at(sort_key: &str) -> Option<DateTime<Utc>> {
    timestamp::parse(sort_key.split_once('#')?.0)
}

/// How many partitions the unsent index's entries spread over: no key is shared by every job
/// (docs/design.md, "Stored data").
pub(super) const UNSENT_SHARDS: u32 = 16;

/// The unsent partition of a job: `UNSENT#<n>`, `n` a stable hash of its id (FNV-1a) modulo
/// [`UNSENT_SHARDS`].
pub(super) fn unsent_partition(id: JobId) -> AttributeValue {
    let hash = id.to_string().bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    s(format!("{UNSENT_PARTITION}#{}", hash % UNSENT_SHARDS))
}

/// Every partition of the unsent index: the shards, and the one partition of the jobs written
/// before the shards were (`UNSENT`), until those are sent or expire.
pub(super) fn unsent_partitions() -> impl Iterator<Item = String> {
    (0..UNSENT_SHARDS)
        .map(|shard| format!("{UNSENT_PARTITION}#{shard}"))
        .chain(std::iter::once(UNSENT_PARTITION.to_owned()))
}
const UNSENT_PARTITION: &str = "UNSENT";
/// The mark of a final job whose webhook is not known to be queued (`true`, or absent).
pub(super) const WEBHOOK_PENDING: &str = "webhook_pending";

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn time(value: DateTime<Utc>) -> AttributeValue {
    s(timestamp::render(value))
}

pub(super) fn job_to_item(job: &Job) -> Item {
    let request = &job.request;
    let mut item = HashMap::from([
        ("pk".to_owned(), job_pk(job.id)),
        ("job_id".to_owned(), s(job.id.to_string())),
        ("owner".to_owned(), s(job.owner.as_str())),
        ("gsi1pk".to_owned(), owner_partition(&job.owner)),
        ("gsi1sk".to_owned(), job_sort_key(job.id)),
        ("status".to_owned(), s(job.status.as_str())),
        ("prompt".to_owned(), s(&request.prompt)),
        ("model".to_owned(), s(&request.model)),
        ("width".to_owned(), n(request.width)),
        ("height".to_owned(), n(request.height)),
        ("num_outputs".to_owned(), n(request.num_outputs)),
        ("seed".to_owned(), n(request.seed)),
        ("output_format".to_owned(), s(request.output_format.extension())),
        ("attempts".to_owned(), n(job.attempts)),
        ("created_at".to_owned(), time(job.created_at)),
        ("updated_at".to_owned(), time(job.updated_at)),
        (
            "media_ids".to_owned(),
            AttributeValue::L(job.media_ids.iter().map(|id| s(id.to_string())).collect()),
        ),
        ("ttl".to_owned(), n(job.ttl)),
    ]);
    let optional = [
        ("negative_prompt", request.negative_prompt.clone().map(s)),
        ("webhook_url", request.webhook_url.as_ref().map(|u| s(u.as_str()))),
        ("started_at", job.started_at.map(time)),
        ("completed_at", job.completed_at.map(time)),
        ("lease_until", job.lease_until.map(|t| n(t.timestamp_millis()))),
        ("error_code", job.error.as_ref().map(|e| s(&e.code))),
        ("error_message", job.error.as_ref().map(|e| s(&e.message))),
        (
            "cancel_requested",
            job.cancel_requested.then_some(AttributeValue::Bool(true)),
        ),
        // Only the exception is written: an item without it is a job of the media API.
        (
            "interface",
            (job.interface != Interface::Media).then(|| s(job.interface.as_str())),
        ),
        ("api_root", job.api_root.clone().map(s)),
        ("gsi2pk", job.unsent.then(|| unsent_partition(job.id))),
        (
            "predictions",
            (!job.predictions.is_empty()).then(|| predictions(&job.predictions)),
        ),
        ("gsi2sk", job.unsent.then(|| unsent_sort_key(job.created_at, job.id))),
        (
            WEBHOOK_PENDING,
            job.webhook_pending.then_some(AttributeValue::Bool(true)),
        ),
        ("price", (job.price_per_image > 0).then(|| n(job.price_per_image))),
        ("runs_model", job.runs_model.clone().map(s)),
        ("slot_model", job.provider_slot.as_ref().map(|slot| s(&slot.model))),
        (
            "slot_at",
            job.provider_slot.as_ref().map(|slot| n(slot.at.timestamp_millis())),
        ),
        (
            "model_attempts",
            (!job.model_attempts.is_empty()).then(|| model_attempts(&job.model_attempts)),
        ),
        ("cost", job.cost_microdollars.map(n)),
        (FINAL_STATUS, job.status.is_final().then(|| s(job.status.as_str()))),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), value);
        }
    }
    item
}

/// The models tried for a job, as stored: one JSON string, read only with the job.
pub(super) fn model_attempts(attempts: &[ModelAttempt]) -> AttributeValue {
    s(serde_json::to_string(attempts).unwrap_or_default())
}

/// A job's noted model runs, as stored.
pub(super) fn predictions(ids: &[String]) -> AttributeValue {
    AttributeValue::L(ids.iter().map(s).collect())
}

pub(super) fn media_to_item(media: &MediaItem) -> Item {
    HashMap::from([
        ("pk".to_owned(), media_pk(media.id)),
        ("owner".to_owned(), s(media.owner.as_str())),
        ("media_id".to_owned(), s(media.id.to_string())),
        ("job_id".to_owned(), s(media.job_id.to_string())),
        ("index".to_owned(), n(media.index)),
        ("bucket".to_owned(), s(&media.bucket)),
        ("key".to_owned(), s(&media.key)),
        ("content_type".to_owned(), s(&media.content_type)),
        ("bytes".to_owned(), n(media.bytes)),
        ("width".to_owned(), n(media.width)),
        ("height".to_owned(), n(media.height)),
        ("ttl".to_owned(), n(media.ttl)),
    ])
}

pub(super) fn key_to_item(record: &KeyRecord) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), key_pk(&record.hash)),
        ("key_hash".to_owned(), s(record.hash.as_str())),
        ("prefix".to_owned(), s(&record.prefix)),
        ("owner".to_owned(), s(record.owner.as_str())),
        ("created_at".to_owned(), time(record.created_at)),
        ("gsi1pk".to_owned(), s(KEYS_PARTITION)),
        (
            "gsi1sk".to_owned(),
            s(format!(
                "{}#{}",
                timestamp::render(record.created_at),
                record.hash.as_str()
            )),
        ),
    ]);
    if let Some(revoked_at) = record.revoked_at {
        item.insert("revoked_at".to_owned(), time(revoked_at));
    }
    if let Some(limits) = record.limits {
        item.insert("creates_per_minute".to_owned(), n(limits.creates_per_minute));
        item.insert("others_per_minute".to_owned(), n(limits.others_per_minute));
        item.insert("concurrent_waits".to_owned(), n(limits.concurrent_waits));
    }
    item
}

pub(super) fn key_from_item(item: &Item) -> Result<KeyRecord, StoreError> {
    let r = Reader::new(item);
    Ok(KeyRecord {
        hash: KeyHash::from_hex(r.s("key_hash")?),
        prefix: r.s("prefix")?.to_owned(),
        owner: r.owner()?,
        created_at: r.time("created_at")?,
        revoked_at: r.opt_time("revoked_at")?,
        limits: match (
            r.opt_n("creates_per_minute")?,
            r.opt_n("others_per_minute")?,
            r.opt_n("concurrent_waits")?,
        ) {
            (None, None, None) => None,
            (creates, others, waits) => {
                let defaults = KeyLimits::default();
                Some(KeyLimits {
                    creates_per_minute: creates.unwrap_or(defaults.creates_per_minute),
                    others_per_minute: others.unwrap_or(defaults.others_per_minute),
                    concurrent_waits: waits.unwrap_or(defaults.concurrent_waits),
                })
            }
        },
    })
}

/// The record that counts a key's requests held open by `Prefer: wait`.
pub(super) fn waits_pk(hash: &KeyHash) -> AttributeValue {
    s(format!("WAITS#{}", hash.as_str()))
}

/// The record that counts a key's requests of a class in one window; it expires with the window.
pub(super) fn rate_pk(hash: &KeyHash, class: RouteClass, window: Window) -> AttributeValue {
    s(format!("RATE#{}#{}#{}", hash.as_str(), class.name(), window.start))
}

/// The record of an owner's quota and usage (docs/design.md, "Quotas"): the limits set for the
/// owner, the ids of the jobs holding a slot (`active`, a string set), and per month the images
/// and micro-dollars charged ([`images_attribute`], [`spend_attribute`]).
pub(super) fn quota_pk(owner: &Owner) -> AttributeValue {
    s(format!("QUOTA#{owner}"))
}

pub(super) const ACTIVE: &str = "active";
pub(super) const MAX_ACTIVE: &str = "max_active";
pub(super) const MONTHLY_IMAGES: &str = "monthly_images";
pub(super) const MONTHLY_MICRODOLLARS: &str = "monthly_microdollars";

/// The attribute counting the images charged in a month: `images_2026_12`.
pub(super) fn images_attribute(month: Month) -> String {
    format!("images_{:04}_{:02}", month.year, month.month)
}

/// The attribute counting the micro-dollars charged in a month: `microdollars_2026_12`.
pub(super) fn spend_attribute(month: Month) -> String {
    format!("microdollars_{:04}_{:02}", month.year, month.month)
}

/// An owner's quota and use of it in `month`; a missing record is an owner with the defaults and
/// nothing used.
pub(super) fn usage_from_item(item: Option<&Item>, month: Month) -> Result<(Usage, Vec<JobId>), StoreError> {
    let empty = Item::new();
    let r = Reader::new(item.unwrap_or(&empty));
    let active = match r.item.get(ACTIVE) {
        None => Vec::new(),
        Some(value) => value
            .as_ss()
            .map_err(|_| r.corrupt(ACTIVE, "is not a string set"))?
            .iter()
            .map(|raw| JobId::parse(raw).map_err(|_| r.corrupt(ACTIVE, "holds something that is not a job id")))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let usage = Usage {
        month,
        active: u32::try_from(active.len()).unwrap_or(u32::MAX),
        images: r.opt_n(&images_attribute(month))?.unwrap_or(0),
        microdollars: r.opt_n(&spend_attribute(month))?.unwrap_or(0),
        quota: Quota {
            max_active: r.opt_n(MAX_ACTIVE)?,
            monthly_images: r.opt_n(MONTHLY_IMAGES)?,
            monthly_microdollars: r.opt_n(MONTHLY_MICRODOLLARS)?,
        },
    };
    Ok((usage, active))
}

/// The record that ties an idempotency key to the job it made.
pub(super) fn idempotency_item(
    owner: &Owner,
    key: &IdempotencyKey,
    job_id: JobId,
    fingerprint: &str,
    expires_at: i64,
) -> Item {
    HashMap::from([
        ("pk".to_owned(), idempotency_pk(owner, key)),
        ("job_id".to_owned(), s(job_id.to_string())),
        ("request_hash".to_owned(), s(fingerprint)),
        ("ttl".to_owned(), n(expires_at)),
    ])
}

/// The job and request fingerprint an idempotency record holds.
pub(super) fn idempotency_from_item(item: &Item) -> Result<(JobId, String), StoreError> {
    let r = Reader::new(item);
    let job_id = JobId::parse(r.s("job_id")?).map_err(|_| r.corrupt("job_id", "is not a job id"))?;
    Ok((job_id, r.s("request_hash")?.to_owned()))
}

/// An owner's signing state: `generation`, and `previous_generation` with `grace_until` while a
/// rotated-out generation still signs.
pub(super) fn signing_state_from_item(item: &Item) -> Result<SigningState, StoreError> {
    let r = Reader::new(item);
    let previous = match (r.opt_n("previous_generation")?, r.opt_time("grace_until")?) {
        (Some(generation), Some(until)) => Some(Previous { generation, until }),
        _ => None,
    };
    Ok(SigningState {
        generation: r.n("generation")?,
        previous,
    })
}

/// Reads typed attributes of one item, naming the item and attribute in any error.
struct Reader<'a> {
    item: &'a Item,
    pk: &'a str,
}

impl<'a> Reader<'a> {
    fn new(item: &'a Item) -> Self {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).map_or("?", String::as_str);
        Self { item, pk }
    }

    fn corrupt(&self, name: &str, problem: &str) -> StoreError {
        StoreError::Corrupt {
            pk: self.pk.to_owned(),
            reason: format!("attribute {name} {problem}"),
        }
    }

    fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(value) => value
                .as_s()
                .map(|v| Some(v.as_str()))
                .map_err(|_| self.corrupt(name, "is not a string")),
        }
    }

    fn s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }

    fn opt_n<T: FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(value) => value
                .as_n()
                .ok()
                .and_then(|raw| raw.parse().ok())
                .map(Some)
                .ok_or_else(|| self.corrupt(name, "is not a number in range")),
        }
    }

    fn n<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.opt_n(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }

    fn parsed<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.s(name)?.parse().map_err(|_| self.corrupt(name, "does not parse"))
    }

    fn opt_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_s(name)?
            .map(|raw| timestamp::parse(raw).ok_or_else(|| self.corrupt(name, "is not an RFC 3339 time")))
            .transpose()
    }

    fn owner(&self) -> Result<Owner, StoreError> {
        Owner::parse(self.s("owner")?).map_err(|_| self.corrupt("owner", "is not an owner name"))
    }

    fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }
}

pub(super) fn job_from_item(item: &Item) -> Result<Job, StoreError> {
    let r = Reader::new(item);
    let id = JobId::parse(r.s("job_id")?).map_err(|_| r.corrupt("job_id", "is not a job id"))?;
    let webhook_url = r
        .opt_s("webhook_url")?
        .map(|raw| url::Url::parse(raw).map_err(|_| r.corrupt("webhook_url", "is not a URL")))
        .transpose()?;
    let error = match (r.opt_s("error_code")?, r.opt_s("error_message")?) {
        (Some(code), message) => Some(JobError::new(code, message.unwrap_or_default())),
        (None, _) => None,
    };
    let media_ids = match item.get("media_ids") {
        None => Vec::new(),
        Some(value) => value
            .as_l()
            .map_err(|_| r.corrupt("media_ids", "is not a list"))?
            .iter()
            .map(|v| {
                v.as_s()
                    .ok()
                    .and_then(|raw| MediaId::parse(raw).ok())
                    .ok_or_else(|| r.corrupt("media_ids", "holds something other than media ids"))
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Job {
        id,
        owner: r.owner()?,
        request: GenerateRequest {
            prompt: r.s("prompt")?.to_owned(),
            negative_prompt: r.opt_s("negative_prompt")?.map(str::to_owned),
            model: r.s("model")?.to_owned(),
            width: r.n("width")?,
            height: r.n("height")?,
            num_outputs: r.n("num_outputs")?,
            seed: r.n("seed")?,
            output_format: r.parsed("output_format")?,
            webhook_url,
        },
        status: r.parsed("status")?,
        attempts: r.n("attempts")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        started_at: r.opt_time("started_at")?,
        completed_at: r.opt_time("completed_at")?,
        lease_until: r
            .opt_n::<i64>("lease_until")?
            .and_then(DateTime::<Utc>::from_timestamp_millis),
        error,
        media_ids,
        cancel_requested: matches!(item.get("cancel_requested"), Some(AttributeValue::Bool(true))),
        interface: match r.opt_s("interface")? {
            None => Interface::Media,
            Some(raw) => Interface::parse(raw).ok_or_else(|| r.corrupt("interface", "is not an interface"))?,
        },
        api_root: r.opt_s("api_root")?.map(str::to_owned),
        unsent: item.contains_key("gsi2pk"),
        webhook_pending: matches!(item.get(WEBHOOK_PENDING), Some(AttributeValue::Bool(true))),
        predictions: match item.get("predictions") {
            None => Vec::new(),
            Some(value) => value
                .as_l()
                .map_err(|_| r.corrupt("predictions", "is not a list"))?
                .iter()
                .map(|v| {
                    v.as_s()
                        .cloned()
                        .map_err(|_| r.corrupt("predictions", "holds something other than strings"))
                })
                .collect::<Result<_, _>>()?,
        },
        price_per_image: r.opt_n("price")?.unwrap_or(0),
        runs_model: r.opt_s("runs_model")?.map(str::to_owned),
        provider_slot: match (r.opt_s("slot_model")?, r.opt_n::<i64>("slot_at")?) {
            (Some(model), Some(at)) => DateTime::<Utc>::from_timestamp_millis(at).map(|at| ProviderSlot {
                model: model.to_owned(),
                at,
            }),
            _ => None,
        },
        model_attempts: match r.opt_s("model_attempts")? {
            None => Vec::new(),
            Some(raw) => {
                serde_json::from_str(raw).map_err(|_| r.corrupt("model_attempts", "is not a list of attempts"))?
            }
        },
        cost_microdollars: r.opt_n("cost")?,
        ttl: r.n("ttl")?,
    })
}

pub(super) fn media_from_item(item: &Item) -> Result<MediaItem, StoreError> {
    let r = Reader::new(item);
    Ok(MediaItem {
        id: MediaId::parse(r.s("media_id")?).map_err(|_| r.corrupt("media_id", "is not a media id"))?,
        job_id: JobId::parse(r.s("job_id")?).map_err(|_| r.corrupt("job_id", "is not a job id"))?,
        owner: r.owner()?,
        index: r.n("index")?,
        bucket: r.s("bucket")?.to_owned(),
        key: r.s("key")?.to_owned(),
        content_type: r.s("content_type")?.to_owned(),
        bytes: r.n("bytes")?,
        width: r.n("width")?,
        height: r.n("height")?,
        ttl: r.n("ttl")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generation::tests::sample_request;
    use crate::domain::keys::tests::sample_owner;
    use std::time::Duration;

    #[test]
    fn the_owner_index_projects_a_jobs_final_status_and_not_its_status() {
        assert!(OWNER_INDEX_ATTRIBUTES.contains(&FINAL_STATUS));
        assert!(!OWNER_INDEX_ATTRIBUTES.contains(&"status"));
        let mut job = Job::new(sample_owner(), sample_request(), Utc::now(), Duration::from_secs(60));
        assert!(!job_to_item(&job).contains_key(FINAL_STATUS), "a queued job has none");
        job.status = crate::domain::job::JobStatus::Failed;
        assert_eq!(job_to_item(&job)[FINAL_STATUS], s("failed"));
    }

    #[test]
    fn a_job_survives_the_round_trip_through_an_item() {
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
        let mut job = Job::new(sample_owner(), sample_request(), now, Duration::from_secs(60));
        job.request.negative_prompt = Some("blurry".into());
        job.request.webhook_url = Some(url::Url::parse("https://example.com/hook").unwrap());
        job.started_at = Some(now);
        job.lease_until = Some(now);
        job.error = Some(JobError::new("model_error", "nope"));
        job.media_ids = vec![MediaId::new(), MediaId::new()];
        job.cancel_requested = true;
        job.interface = Interface::Replicate;
        job.predictions = vec!["p1".into(), "p2".into()];
        job.webhook_pending = true;
        job.price_per_image = 42_000;
        job.model_attempts = vec![ModelAttempt {
            model: "gpt-image-1".into(),
            outcome: "model_unavailable".into(),
            duration_ms: 1200,
        }];
        job.cost_microdollars = Some(84_150);
        assert_eq!(job_from_item(&job_to_item(&job)).unwrap(), job);
        job.unsent = false;
        assert_eq!(job_from_item(&job_to_item(&job)).unwrap(), job);
    }

    #[test]
    fn a_media_item_survives_the_round_trip() {
        let media = MediaItem {
            id: MediaId::new(),
            job_id: JobId::new(),
            owner: sample_owner(),
            index: 3,
            bucket: "b".into(),
            key: "media/x/3.png".into(),
            content_type: "image/png".into(),
            bytes: 1234,
            width: 256,
            height: 512,
            ttl: 99,
        };
        assert_eq!(media_from_item(&media_to_item(&media)).unwrap(), media);
    }

    /// Each index of the jobs table in template.yaml and the attribute of its partition key.
    fn index_partition_keys() -> Vec<(String, String)> {
        let template = include_str!("../../../../../template.yaml");
        let table = &template[template.find("\n  JobsTable:").expect("template.yaml has JobsTable")..];
        let indexes = &table[table.find("GlobalSecondaryIndexes:").expect("JobsTable has indexes")..];
        let indexes = &indexes[..indexes.find("TimeToLiveSpecification:").unwrap_or(indexes.len())];
        let (mut found, mut index, mut attribute) = (Vec::new(), String::new(), String::new());
        for line in indexes.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("- IndexName:") {
                index = name.trim().to_owned();
            } else if let Some(name) = line.trim_start_matches("- ").strip_prefix("AttributeName:") {
                attribute = name.trim().to_owned();
            } else if line == "KeyType: HASH" {
                found.push((index.clone(), attribute.clone()));
            }
        }
        found
    }

    #[test]
    fn no_index_partition_key_is_the_same_for_every_job() {
        let keys = index_partition_keys();
        let names: Vec<&str> = keys.iter().map(|(index, _)| index.as_str()).collect();
        assert_eq!(names, ["by_owner", "unsent"], "{keys:?}");
        let owners = ["a", "b", "c", "d"].map(|name| Owner::parse(name).unwrap());
        let jobs: Vec<Job> = (0..256)
            .map(|i| {
                let owner = owners[i % owners.len()].clone();
                Job::new(owner, sample_request(), Utc::now(), Duration::from_secs(60))
            })
            .collect();
        for (index, attribute) in keys {
            let values: std::collections::HashSet<String> = jobs
                .iter()
                .map(|job| {
                    let item = job_to_item(job);
                    let value = item
                        .get(&attribute)
                        .unwrap_or_else(|| panic!("a new job has no {attribute}"));
                    value.as_s().unwrap().clone()
                })
                .collect();
            assert!(
                values.len() > 1,
                "index {index}'s partition key {attribute} is {values:?} for every job"
            );
        }
    }

    #[test]
    fn one_owners_unsent_jobs_spread_over_every_shard() {
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..1600 {
            let job = Job::new(sample_owner(), sample_request(), Utc::now(), Duration::from_secs(60));
            let partition = job_to_item(&job)["gsi2pk"].as_s().unwrap().clone();
            assert_eq!(partition, unsent_partition(job.id).as_s().unwrap().as_str(), "stable");
            *counts.entry(partition).or_default() += 1;
        }
        assert_eq!(counts.len(), UNSENT_SHARDS as usize, "{counts:?}");
        // 100 a shard on average: none takes a large share.
        assert!(counts.values().all(|&n| (40..=180).contains(&n)), "{counts:?}");
        let readable: Vec<String> = unsent_partitions().collect();
        assert!(
            counts.keys().all(|p| readable.contains(p)),
            "the sweeper reads every shard"
        );
        assert!(
            readable.contains(&UNSENT_PARTITION.to_owned()),
            "and the jobs written before them"
        );
    }

    #[test]
    fn an_unsent_entry_tells_when_its_job_was_made() {
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
        let id = JobId::new();
        let key = unsent_sort_key(now, id);
        assert_eq!(unsent_created_at(key.as_s().unwrap()), Some(now));
    }

    #[test]
    fn a_broken_item_names_the_attribute() {
        let job = Job::new(sample_owner(), sample_request(), Utc::now(), Duration::from_secs(60));
        let mut item = job_to_item(&job);
        item.insert("width".into(), s("wide"));
        let err = job_from_item(&item).unwrap_err().to_string();
        assert!(err.contains("width"), "{err}");
        assert!(err.contains(&format!("JOB#{}", job.id)), "{err}");
    }
}
