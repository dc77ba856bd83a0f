//! The Replicate-compatible API's words for ours (docs/design.md, "Replicate-compatible API"):
//! a prediction is a job, its `input` our request body, its status our job status under
//! Replicate's names.

use serde_json::{Map, Value};

use super::catalogue::from_public_name;
use super::generation::FieldError;
use super::job::JobStatus;

/// Inputs Replicate's image models take that have no counterpart here: accepted and ignored,
/// so that code written for those models runs unchanged.
const IGNORED_INPUTS: [&str; 7] = [
    "go_fast",
    "megapixels",
    "output_quality",
    "num_inference_steps",
    "disable_safety_checker",
    "guidance",
    "guidance_scale",
];

/// Inputs that are ours under the same name.
const OUR_INPUTS: [&str; 7] = [
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "num_outputs",
    "seed",
    "output_format",
];

/// The sizes an `aspect_ratio` stands for when no width and height are given: about a
/// megapixel, in multiples of 32.
const ASPECT_RATIOS: [(&str, u32, u32); 11] = [
    ("1:1", 1024, 1024),
    ("16:9", 1344, 768),
    ("9:16", 768, 1344),
    ("21:9", 1440, 608),
    ("9:21", 608, 1440),
    ("3:2", 1216, 800),
    ("2:3", 800, 1216),
    ("4:3", 1152, 864),
    ("3:4", 864, 1152),
    ("5:4", 1120, 896),
    ("4:5", 896, 1120),
];

/// The events a webhook may be sent for, in Replicate's words.
pub const WEBHOOK_EVENTS: [&str; 4] = ["start", "output", "logs", "completed"];

/// A prediction's status, in Replicate's words.
// What the Replicate-compatible API answers, and what Replicate's own API answers the Replicate
// model (adapters/image_model/replicate.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PredictionStatus {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    /// Replicate's: ended before it started. Never one of ours.
    Aborted,
}

impl PredictionStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, PredictionStatus::Starting | PredictionStatus::Processing)
    }
}

/// A queued job is `starting`: Replicate's clients accept no other word for it.
impl From<JobStatus> for PredictionStatus {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Queued => PredictionStatus::Starting,
            JobStatus::Processing => PredictionStatus::Processing,
            JobStatus::Succeeded => PredictionStatus::Succeeded,
            JobStatus::Failed => PredictionStatus::Failed,
            JobStatus::Canceled => PredictionStatus::Canceled,
        }
    }
}

/// The body of `POST /media/generate` a prediction of `model` (`owner/name`) with this create
/// request's `input`, `webhook` and `webhook_events_filter` stands for. Every rule of the body
/// still applies when it is parsed; field names in errors are prefixed `input.` as the client
/// sent them.
pub fn generate_body(model: &str, request: &Value) -> Result<Value, Vec<FieldError>> {
    let Some(request) = request.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut body = Map::new();
    body.insert("model".into(), Value::String(from_public_name(model).to_owned()));
    for (name, value) in request {
        match name.as_str() {
            "input" | "version" | "stream" => {}
            // `webhook_completed` is the webhook for the completed event alone: the only event
            // delivered here (docs/design.md, "Webhooks").
            "webhook" | "webhook_completed" => {
                body.insert("webhook_url".into(), value.clone());
            }
            "webhook_events_filter" if value.is_null() => {}
            "webhook_events_filter" => {
                let valid = value.as_array().is_some_and(|events| {
                    events
                        .iter()
                        .all(|event| event.as_str().is_some_and(|e| WEBHOOK_EVENTS.contains(&e)))
                });
                if !valid {
                    errors.push(FieldError::new(
                        name.as_str(),
                        "must be a list of: start, output, logs, completed",
                    ));
                }
            }
            other => errors.push(FieldError::new(other, "unknown field")),
        }
    }
    let input = match request.get("input") {
        Some(Value::Object(input)) => input.clone(),
        None => Map::new(),
        Some(_) => {
            errors.push(FieldError::new("input", "must be an object"));
            Map::new()
        }
    };
    for (name, value) in &input {
        if OUR_INPUTS.contains(&name.as_str()) {
            body.insert(name.clone(), value.clone());
        } else if name == "aspect_ratio" && value.is_null() {
            // `null` counts as absent, as everywhere in the body.
        } else if name == "aspect_ratio" {
            match value
                .as_str()
                .and_then(|ratio| ASPECT_RATIOS.iter().find(|(r, ..)| *r == ratio))
            {
                Some((_, width, height)) => {
                    body.entry("width").or_insert((*width).into());
                    body.entry("height").or_insert((*height).into());
                }
                None => {
                    let known: Vec<&str> = ASPECT_RATIOS.iter().map(|(r, ..)| *r).collect();
                    errors.push(FieldError::new(
                        "input.aspect_ratio",
                        format!("must be one of: {}", known.join(", ")),
                    ));
                }
            }
        } else if !IGNORED_INPUTS.contains(&name.as_str()) {
            errors.push(FieldError::new(format!("input.{name}"), "unknown input"));
        }
    }
    // Only the completed event is delivered here: a filter without it asks for no webhook.
    let completed_wanted = match request.get("webhook_events_filter").and_then(Value::as_array) {
        Some(events) => events.iter().any(|event| event.as_str() == Some("completed")),
        None => true,
    };
    if !completed_wanted {
        body.remove("webhook_url");
    }
    // Explicit sizes win over an aspect ratio, whichever came first.
    for side in ["width", "height"] {
        if let Some(value) = input.get(side) {
            body.insert(side.into(), value.clone());
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(body))
    } else {
        Err(errors)
    }
}

/// Names a request field's error the way the client sent the field.
pub fn input_field(field: &str) -> String {
    if OUR_INPUTS.contains(&field) {
        format!("input.{field}")
    } else if field == "webhook_url" {
        "webhook".to_owned()
    } else {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_map_onto_our_body() {
        let body = generate_body(
            "mediagen/local",
            &json!({"input": {"prompt": "a fox", "aspect_ratio": "16:9", "go_fast": true, "seed": 3},
                    "webhook": "https://example.com/hook", "webhook_events_filter": ["completed"]}),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"model": "local", "prompt": "a fox", "width": 1344, "height": 768, "seed": 3,
                   "webhook_url": "https://example.com/hook"})
        );
        let sized = generate_body(
            "black-forest-labs/flux-schnell",
            &json!({"input": {"prompt": "a", "width": 512, "aspect_ratio": "1:1"}}),
        )
        .unwrap();
        assert_eq!(
            (sized["model"].clone(), sized["width"].clone(), sized["height"].clone()),
            (json!("black-forest-labs/flux-schnell"), json!(512), json!(1024))
        );
    }

    #[test]
    fn unknown_inputs_and_fields_are_named() {
        let errors = generate_body(
            "mediagen/local",
            &json!({"input": {"prompt": "a", "steps": 3, "aspect_ratio": "7:3"}, "extra": 1,
                    "webhook_events_filter": ["done"]}),
        )
        .unwrap_err();
        let mut fields: Vec<String> = errors.into_iter().map(|e| e.field).collect();
        fields.sort();
        assert_eq!(
            fields,
            ["extra", "input.aspect_ratio", "input.steps", "webhook_events_filter"]
        );
        assert_eq!(input_field("width"), "input.width");
        assert_eq!(input_field("webhook_url"), "webhook");
    }

    #[test]
    fn statuses_use_replicates_words() {
        let word = |status: JobStatus| json!(PredictionStatus::from(status));
        assert_eq!(word(JobStatus::Queued), "starting");
        assert_eq!(word(JobStatus::Canceled), "canceled");
        let answered: PredictionStatus = serde_json::from_value(json!("aborted")).unwrap();
        assert!(answered.is_final());
        assert!(!PredictionStatus::from(JobStatus::Processing).is_final());
    }
}
