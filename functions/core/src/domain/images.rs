//! The OpenAI-compatible images API's words for ours (docs/design.md, "OpenAI-compatible API"):
//! an images request is the body of `POST /media/generate`, and the names OpenAI gives its
//! fields are used in what is said about them.

use serde_json::{Map, Value};

use super::catalogue::{MAX_OUTPUTS, Size};
use super::generation::{FieldError, MAX_SIDE, MIN_SIDE, SIDE_STEP};

/// The sizes OpenAI's images API names, each made at the nearest size the model makes.
pub const SIZES: [&str; 7] = [
    "256x256",
    "512x512",
    "1024x1024",
    "1536x1024",
    "1024x1536",
    "1792x1024",
    "1024x1792",
];
/// OpenAI's qualities: accepted, and meaning nothing here.
pub const QUALITIES: [&str; 6] = ["auto", "low", "medium", "high", "standard", "hd"];
/// The backgrounds made here: no model of ours makes a transparent one.
pub const BACKGROUNDS: [&str; 2] = ["auto", "opaque"];
/// OpenAI's formats, with ours for each.
pub const OUTPUT_FORMATS: [(&str, &str); 3] = [("png", "png"), ("jpeg", "jpg"), ("webp", "webp")];
/// The most partial images a stream may ask for. None is ever sent: no model of ours makes a
/// partial image, so a stream has only the finished ones.
pub const MAX_PARTIAL_IMAGES: u64 = 3;

/// How the images come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    /// Our file links, as the Replicate-compatible API's outputs.
    #[default]
    Url,
    /// The bytes, base64.
    B64Json,
}

/// An images request, in our terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagesRequest {
    /// The body of `POST /media/generate` it stands for; its rules still apply when it is parsed.
    pub body: Value,
    /// Always `B64Json` for a stream: its events carry the bytes, as OpenAI's do.
    pub response_format: ResponseFormat,
    /// Answer OpenAI's stream events (`text/event-stream`) instead of one JSON body.
    pub stream: bool,
}

/// Maps OpenAI's request onto our body. Unknown fields are ignored, as OpenAI's server does;
/// every field we know is checked, and every broken rule named by OpenAI's name for it.
pub fn images_request(request: &Value) -> Result<ImagesRequest, Vec<FieldError>> {
    let Some(request) = request.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut body = Map::new();
    // Prompt and model keep their names; the body's rules check them.
    for name in ["prompt", "model"] {
        if let Some(value) = present(request, name) {
            body.insert(name.into(), value.clone());
        }
    }
    if let Some(value) = present(request, "n") {
        match whole(value).filter(|n| (1..=u64::from(MAX_OUTPUTS)).contains(n)) {
            Some(n) => {
                body.insert("num_outputs".into(), n.into());
            }
            None => errors.push(FieldError::new(
                "n",
                format!("must be a whole number from 1 to {MAX_OUTPUTS}: the most images one request makes here"),
            )),
        }
    }
    match present(request, "size").map(|v| v.as_str().filter(|s| *s == "auto" || SIZES.contains(s))) {
        None | Some(Some("auto")) => {}
        Some(Some(size)) => {
            if let Ok(size) = size.parse::<Size>() {
                let (width, height) = our_sides(size);
                body.insert("width".into(), width.into());
                body.insert("height".into(), height.into());
            }
        }
        Some(None) => errors.push(FieldError::new(
            "size",
            format!("must be auto or one of: {}", SIZES.join(", ")),
        )),
    }
    match present(request, "output_format").map(|v| {
        v.as_str()
            .and_then(|f| OUTPUT_FORMATS.iter().find(|(theirs, _)| *theirs == f))
    }) {
        None => {}
        Some(Some((_, ours))) => {
            body.insert("output_format".into(), (*ours).into());
        }
        Some(None) => errors.push(FieldError::new("output_format", "must be one of: png, jpeg, webp")),
    }
    let response_format = match present(request, "response_format").map(Value::as_str) {
        None | Some(Some("url")) => ResponseFormat::Url,
        Some(Some("b64_json")) => ResponseFormat::B64Json,
        Some(_) => {
            errors.push(FieldError::new("response_format", "must be url or b64_json"));
            ResponseFormat::Url
        }
    };
    if present(request, "quality").is_some_and(|v| !v.as_str().is_some_and(|q| QUALITIES.contains(&q))) {
        errors.push(FieldError::new(
            "quality",
            format!("must be one of: {}", QUALITIES.join(", ")),
        ));
    }
    match present(request, "background").map(Value::as_str) {
        None => {}
        Some(Some(background)) if BACKGROUNDS.contains(&background) => {}
        Some(Some("transparent")) => errors.push(FieldError::new(
            "background",
            "transparent backgrounds are not made here; use auto or opaque",
        )),
        Some(_) => errors.push(FieldError::new("background", "must be auto or opaque")),
    }
    if present(request, "user").is_some_and(|v| !v.is_string()) {
        errors.push(FieldError::new("user", "must be a string"));
    }
    if present(request, "partial_images").is_some_and(|v| whole(v).is_none_or(|p| p > MAX_PARTIAL_IMAGES)) {
        errors.push(FieldError::new(
            "partial_images",
            format!("must be a whole number from 0 to {MAX_PARTIAL_IMAGES}"),
        ));
    }
    let stream = match present(request, "stream") {
        None => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => {
            errors.push(FieldError::new("stream", "must be a boolean"));
            false
        }
    };
    // A stream's events carry the bytes and have no field for a link: OpenAI streams only its
    // GPT image models, which answer base64 whatever `response_format` says, and so do we.
    let response_format = if stream {
        ResponseFormat::B64Json
    } else {
        response_format
    };
    if errors.is_empty() {
        Ok(ImagesRequest {
            body: Value::Object(body),
            response_format,
            stream,
        })
    } else {
        Err(errors)
    }
}

/// A field's value, `null` counting as absent as OpenAI's SDKs send it.
fn present<'a>(request: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    request.get(name).filter(|v| !v.is_null())
}

/// A whole number, written `2` or `2.0` (JSON has one number type, as `generation.rs` says).
fn whole(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
            .map(|f| f as u64)
    })
}

/// The sides within our rules nearest to `size` in shape: a side over the longest we make is
/// scaled down with the other. A model with sizes of its own then makes the nearest of them
/// (`catalogue::fit_size`).
fn our_sides(size: Size) -> (u32, u32) {
    let longest = f64::from(size.width.max(size.height));
    let scale = (f64::from(MAX_SIDE) / longest).min(1.0);
    let side = |n: u32| {
        let steps = (f64::from(n) * scale / f64::from(SIDE_STEP)).round() as u32;
        (steps * SIDE_STEP).clamp(MIN_SIDE, MAX_SIDE)
    };
    (side(size.width), side(size.height))
}

/// OpenAI's name for a field of our body, for the errors its rules give.
pub fn param(field: &str) -> &str {
    match field {
        "width" | "height" => "size",
        "num_outputs" => "n",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_maps_onto_our_body() {
        let request = images_request(&json!({
            "model": "local", "prompt": "a fox", "n": 2, "size": "1536x1024", "quality": "high",
            "response_format": "b64_json", "output_format": "jpeg", "background": "opaque",
            "user": "u-1", "stream": false, "partial_images": 0, "moderation": "low",
        }))
        .unwrap();
        assert_eq!(
            request.body,
            json!({"model": "local", "prompt": "a fox", "num_outputs": 2, "width": 1440, "height": 960,
                   "output_format": "jpg"})
        );
        assert_eq!(request.response_format, ResponseFormat::B64Json);
        assert!(!request.stream);
        let plain = images_request(&json!({"prompt": "a", "size": "auto", "n": null, "stream": null})).unwrap();
        assert_eq!(plain.body, json!({"prompt": "a"}));
        assert_eq!(plain.response_format, ResponseFormat::Url);
        assert!(!plain.stream);
    }

    #[test]
    fn a_stream_is_taken_and_answers_base64() {
        for asked in [json!(null), json!("b64_json"), json!("url")] {
            let request = images_request(&json!({
                "prompt": "a fox", "stream": true, "partial_images": 3, "response_format": asked,
            }))
            .unwrap();
            assert!(request.stream);
            assert_eq!(request.response_format, ResponseFormat::B64Json);
            // The job is the same as without a stream, so an Idempotency-Key matches either.
            assert_eq!(request.body, json!({"prompt": "a fox"}));
        }
        let errors = images_request(&json!({"prompt": "a", "stream": true, "response_format": "x"})).unwrap_err();
        assert_eq!(
            errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            ["response_format"]
        );
        let errors = images_request(&json!({"prompt": "a", "stream": "yes"})).unwrap_err();
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["stream"]);
    }

    #[test]
    fn every_size_fits_our_sides_in_its_shape() {
        for raw in SIZES {
            let size: Size = raw.parse().unwrap();
            let (width, height) = our_sides(size);
            assert!((MIN_SIDE..=MAX_SIDE).contains(&width) && (MIN_SIDE..=MAX_SIDE).contains(&height));
            assert_eq!((width % SIDE_STEP, height % SIDE_STEP), (0, 0));
            let shape = |w: u32, h: u32| f64::from(w) / f64::from(h);
            assert!(
                (shape(width, height) / shape(size.width, size.height) - 1.0).abs() < 0.02,
                "{raw}"
            );
        }
        assert_eq!(our_sides("1792x1024".parse().unwrap()), (1440, 832));
        assert_eq!(our_sides("512x512".parse().unwrap()), (512, 512));
    }

    #[test]
    fn broken_rules_are_named_by_openais_names() {
        let errors = images_request(&json!({
            "prompt": "a", "n": 5, "size": "640x480", "output_format": "jpg", "response_format": "bytes",
            "quality": 3, "background": "transparent", "user": 7, "partial_images": 4, "stream": 1,
        }))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "n",
                "size",
                "output_format",
                "response_format",
                "quality",
                "background",
                "user",
                "partial_images",
                "stream"
            ]
        );
        assert!(images_request(&json!(["a"])).is_err());
        assert_eq!(
            (param("width"), param("num_outputs"), param("prompt")),
            ("size", "n", "prompt")
        );
    }
}
