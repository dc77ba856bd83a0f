//! The contract as a document (docs/design.md, "HTTP contract"): an OpenAPI 3.1 description of
//! every route, derived from the route functions' annotations and the answers' types, served at
//! `GET /openapi.json` and kept in `docs/openapi.json`.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::IMAGE_GENERATIONS;
use super::{content, openai, replicate, status, stream, submit};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mediagen",
        description = "Asynchronous image generation: submit a prompt, follow the job, download the images. \
                       Every route but /health, /openapi.json and /playground needs `Authorization: Bearer <API key>`; \
                       errors are application/problem+json (RFC 9457). The /v1 routes speak Replicate's API, \
                       and /v1/images/generations OpenAI's images API, with OpenAI's errors.",
    ),
    paths(
        submit::generate,
        submit::cancel,
        status::status,
        status::job,
        status::list,
        status::health,
        status::playground,
        status::openapi,
        status::models,
        status::webhook_secret,
        status::usage,
        status::rotate_webhook_secret,
        content::content,
        replicate::create,
        replicate::get,
        replicate::list,
        replicate::cancel,
        replicate::file,
        openai::generate,
        stream::answer,
    ),
    modifiers(&BearerKey),
    security(("api_key" = [])),
)]
struct ApiDoc;

/// The API key as the security scheme of every route that needs one.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key, `mgk_` and 32 characters (mediagen-dev keys create)"))
                    .build(),
            ),
        );
    }
}

/// The description of this deployment: the models it offers listed in the bodies' `model`.
pub fn document(models: &[String]) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    let model = json!({
        "type": ["string", "null"],
        "enum": models.iter().map(|m| json!(m)).chain([Value::Null]).collect::<Vec<_>>(),
        "description": "One of the models this deployment offers; its default when absent",
    });
    doc["components"]["schemas"]["GenerateBody"]["properties"]["model"] = model.clone();
    doc["components"]["schemas"]["ImagesBody"]["properties"]["model"] = model;
    // A stream's schema is one event's, as OpenAPI 3.1 tools read `text/event-stream` (3.2's
    // `itemSchema`): its name and its `data`, the JSON of `ImageGenCompletedEvent`.
    let stream = &mut doc["paths"][IMAGE_GENERATIONS]["post"]["responses"]["200"]["content"]["text/event-stream"];
    if stream.is_object() {
        stream["schema"] = json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"const": "image_generation.completed"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/ImageGenCompletedEvent"},
                },
            },
        });
    }
    // `POST /v1/predictions` is the same operation as the model's route, the model in `version`.
    let by_model = "/v1/models/{owner}/{name}/predictions";
    if let Some(mut create) = doc["paths"][by_model]["post"].as_object().cloned() {
        if let Some(Value::Array(params)) = create.get_mut("parameters") {
            params.retain(|p| p["in"] != "path");
        }
        create.insert("operationId".into(), json!("create_by_version"));
        create.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/PredictionRequestByVersion"}}}}),
        );
        doc["paths"]["/v1/predictions"]["post"] = Value::Object(create);
        // Here the model is the version, so the version is required.
        let mut by_version = doc["components"]["schemas"]["PredictionRequest"].clone();
        by_version["required"] = json!(["input", "version"]);
        by_version["properties"]["version"]["type"] = json!("string");
        doc["components"]["schemas"]["PredictionRequestByVersion"] = by_version;
    }
    declare_links(&mut doc);
    declare_rate_limits(&mut doc);
    doc
}

/// Every route that takes a key may answer `429` past the key's rate limit (docs/design.md,
/// "Rate limits"), with when to try again and the draft's headers.
fn declare_rate_limits(doc: &mut Value) {
    let header = |description: &str| json!({"description": description, "schema": {"type": "string"}});
    let limited = json!({
        "description": "The key's rate limit for this class of request is used up, or (creating a job) its owner \
                        has as many jobs queued or running as their quota allows; try again after Retry-After",
        "headers": {
            "Retry-After": {"description": "Seconds until the window ends", "schema": {"type": "integer"}},
            "RateLimit-Policy": header("The limit: `\"create\";q=600;w=60` (draft-ietf-httpapi-ratelimit-headers)"),
            "RateLimit": header("What remains: `\"create\";r=0;t=42`"),
        },
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    });
    // The OpenAI-compatible route writes its errors OpenAI's way.
    let mut limited_openai = limited.clone();
    limited_openai["content"] = json!({"application/json": {"schema": {"$ref": "#/components/schemas/OpenAiError"}}});
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, operation) in paths
        .iter_mut()
        .filter_map(|(path, o)| Some(path).zip(o.as_object_mut()))
        .flat_map(|(path, o)| o.values_mut().map(move |operation| (path, operation)))
    {
        let limited = if path == IMAGE_GENERATIONS {
            &limited_openai
        } else {
            &limited
        };
        // The public routes declare an empty security requirement.
        let public = operation["security"]
            .as_array()
            .is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(|r| r.is_empty())));
        if !public && let Some(responses) = operation["responses"].as_object_mut() {
            responses.insert("429".into(), limited.clone());
        }
    }
}

/// The links from what creates a job to what reads or cancels it, for clients and for
/// schemathesis's stateful phase.
fn declare_links(doc: &mut Value) {
    let job = |operation: &str| json!({"operationId": operation, "parameters": {"job_id": "$response.body#/job_id"}});
    let job_links = json!({"status": job("status"), "job": job("job"), "cancel": job("cancel")});
    let prediction =
        |operation: &str| json!({"operationId": operation, "parameters": {"prediction_id": "$response.body#/id"}});
    let prediction_links = json!({"get": prediction("get_prediction"), "cancel": prediction("cancel_prediction")});
    for (path, links) in [
        ("/media/generate", &job_links),
        ("/v1/models/{owner}/{name}/predictions", &prediction_links),
        ("/v1/predictions", &prediction_links),
    ] {
        if let Some(responses) = doc["paths"][path]["post"]["responses"].as_object_mut() {
            for (status, response) in responses.iter_mut() {
                if status.starts_with('2') {
                    response["links"] = links.clone();
                }
            }
        }
    }
}

/// The committed description (`docs/openapi.json`) is this one, for the local stack's models:
/// `mediagen-dev openapi` writes it.
pub fn local_document() -> Value {
    document(&["local".to_owned(), "local-slow".to_owned()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generation::{MAX_OUTPUTS, MAX_PROMPT_CHARS, MAX_SIDE, MIN_SIDE, SIDE_STEP};

    #[test]
    fn the_committed_description_is_the_generated_one() {
        let committed: Value =
            serde_json::from_str(include_str!("../../../../../docs/openapi.json")).expect("docs/openapi.json is JSON");
        assert!(
            committed == local_document(),
            "docs/openapi.json is stale: run `cargo run -q -p mediagen-devtools -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn the_schema_limits_are_the_rules() {
        // The attributes above cannot name constants: this test holds them to the rules.
        let doc = local_document();
        let body = &doc["components"]["schemas"]["GenerateBody"]["properties"];
        for side in ["width", "height"] {
            assert_eq!(body[side]["minimum"], MIN_SIDE);
            assert_eq!(body[side]["maximum"], MAX_SIDE);
            assert_eq!(body[side]["multipleOf"], SIDE_STEP);
        }
        assert_eq!(body["prompt"]["maxLength"], MAX_PROMPT_CHARS);
        assert_eq!(body["negative_prompt"]["maxLength"], MAX_PROMPT_CHARS);
        assert_eq!(body["num_outputs"]["maximum"], MAX_OUTPUTS);
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
