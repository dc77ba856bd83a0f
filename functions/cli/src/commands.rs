//! Each subcommand: talks to the API and answers what to print on stdout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{Answer, Api, GenerateRequest, Job};
use crate::cli::{Generate, Status};
use crate::error::Error;
use crate::progress::Progress;
use crate::wait;

/// The job this run submitted, to name it if the run is interrupted.
pub static SUBMITTED: OnceLock<String> = OnceLock::new();

pub async fn generate(api: &Api, args: Generate, json: bool) -> Result<String, Error> {
    let request = GenerateRequest {
        prompt: args.prompt,
        negative_prompt: args.negative_prompt,
        model: args.model,
        width: args.width,
        height: args.height,
        num_outputs: args.num_outputs,
        seed: args.seed,
        output_format: args.format.map(|f| f.as_str().to_owned()),
    };
    let started = Instant::now();
    let accepted = api.submit(&request, args.idempotency_key.as_deref()).await?;
    let job_id = accepted.value.job_id.clone();
    let _ = SUBMITTED.set(job_id.clone());
    if args.no_wait {
        return Ok(if json {
            json_line(&accepted.raw)
        } else {
            format!("{job_id}\n")
        });
    }
    let progress = Progress::new(&job_id, started);
    progress.state("queued", 0);
    let job = wait::until_final(api, &job_id, Duration::from_secs(args.timeout), &progress, started).await?;
    finish(api, job, &args.out, &progress, json).await
}

pub async fn open(
    api: &Api,
    job_id: &str,
    out: &Path,
    print_urls: bool,
    timeout: u64,
    json: bool,
) -> Result<String, Error> {
    let started = Instant::now();
    let (mut job, _) = api.job(job_id, None).await?;
    let progress = Progress::new(job_id, started);
    if !job.value.is_final() {
        progress.state(&job.value.status, job.value.attempts);
        job = wait::until_final(api, job_id, Duration::from_secs(timeout), &progress, started).await?;
    }
    if !print_urls {
        return finish(api, job, out, &progress, json).await;
    }
    ensure_succeeded(&job.value, &progress)?;
    progress.finish(&format!("job {job_id} succeeded"), "");
    let mut links = Vec::new();
    for media in sorted_media(&job.value) {
        let link = api.content(&media.media_id).await?;
        links.push((media.media_id.clone(), media.index, link));
    }
    if json {
        let list: Vec<Value> = links
            .iter()
            .map(|(id, index, link)| {
                json!({"media_id": id, "index": index, "url": link.url, "expires_at": link.expires_at,
                       "content_type": link.content_type})
            })
            .collect();
        return Ok(json_line(&Value::Array(list)));
    }
    Ok(links.iter().map(|(_, _, link)| format!("{}\n", link.url)).collect())
}

/// A final job: fails for a failed or canceled one, else downloads its images.
async fn finish(api: &Api, job: Answer<Job>, out: &Path, progress: &Progress, json: bool) -> Result<String, Error> {
    ensure_succeeded(&job.value, progress)?;
    let files = download_all(api, &job.value, out, progress).await?;
    let images = match files.len() {
        1 => "1 image".to_owned(),
        n => format!("{n} images"),
    };
    progress.finish(
        &format!("job {} succeeded", job.value.job_id),
        &format!(" · attempt {} · {images}", job.value.attempts),
    );
    if json {
        let mut raw = job.raw;
        let paths: Vec<Value> = files.iter().map(|p| Value::String(p.display().to_string())).collect();
        if let Value::Object(map) = &mut raw {
            map.insert("files".into(), Value::Array(paths));
        }
        return Ok(json_line(&raw));
    }
    Ok(files.iter().map(|p| format!("{}\n", p.display())).collect())
}

fn ensure_succeeded(job: &Job, progress: &Progress) -> Result<(), Error> {
    match job.status.as_str() {
        "succeeded" => Ok(()),
        "canceled" => {
            progress.finish(&format!("job {} canceled", job.job_id), "");
            Err(Error::JobCanceled {
                job_id: job.job_id.clone(),
            })
        }
        "failed" => {
            progress.finish(
                &format!("job {} failed", job.job_id),
                &format!(" · attempt {}", job.attempts),
            );
            let error = job.error.clone().unwrap_or(crate::api::JobError {
                code: "unknown".into(),
                message: "the API gave no reason".into(),
            });
            Err(Error::JobFailed {
                job_id: job.job_id.clone(),
                code: error.code,
                message: error.message,
            })
        }
        other => Err(Error::Protocol(format!("job {} is {other}, not final", job.job_id))),
    }
}

fn sorted_media(job: &Job) -> Vec<&crate::api::Media> {
    let mut media: Vec<_> = job.media.iter().collect();
    media.sort_by_key(|m| m.index);
    media
}

/// Downloads each image into `out` as `<job_id>-<index>.<ext>`.
async fn download_all(api: &Api, job: &Job, out: &Path, progress: &Progress) -> Result<Vec<PathBuf>, Error> {
    let media = sorted_media(job);
    if media.is_empty() {
        return Err(Error::Protocol(format!("job {} succeeded without images", job.job_id)));
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for (n, item) in media.iter().enumerate() {
        progress.message(format!("downloading {}/{}", n + 1, media.len()));
        let link = api.content(&item.media_id).await?;
        let bytes = api.download(&link.url).await?;
        let content_type = item.content_type.as_deref().or(link.content_type.as_deref());
        let ext = extension(content_type, job.output_format.as_deref());
        let path = out.join(format!("{}-{}.{ext}", job.job_id, item.index));
        // Written beside and renamed, so a file with the final name is always whole.
        let partial = out.join(format!(".{}-{}.{ext}.part", job.job_id, item.index));
        std::fs::write(&partial, &bytes).map_err(|source| Error::Io {
            path: partial.clone(),
            source,
        })?;
        std::fs::rename(&partial, &path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        files.push(path);
    }
    Ok(files)
}

fn extension(content_type: Option<&str>, output_format: Option<&str>) -> &'static str {
    match content_type.map(|t| t.split(';').next().unwrap_or(t).trim()) {
        Some("image/png") => "png",
        Some("image/webp") => "webp",
        Some("image/jpeg") => "jpg",
        _ => match output_format {
            Some("webp") => "webp",
            Some("jpg" | "jpeg") => "jpg",
            _ => "png",
        },
    }
}

pub async fn status(api: &Api, job_id: &str, json: bool) -> Result<String, Error> {
    let (job, _) = api.job(job_id, None).await?;
    if json {
        return Ok(json_line(&job.raw));
    }
    let job = job.value;
    let mut out = String::new();
    let _ = writeln!(out, "job       {}", job.job_id);
    let _ = writeln!(out, "status    {} (attempt {})", job.status, job.attempts);
    if let Some(error) = &job.error {
        let _ = writeln!(out, "error     {}: {}", error.code, one_line(&error.message));
    }
    if let Some(prompt) = &job.prompt {
        let _ = writeln!(out, "prompt    {}", one_line(prompt));
    }
    let mut request = Vec::new();
    if let Some(model) = &job.model {
        request.push(model.clone());
    }
    if let (Some(w), Some(h)) = (job.width, job.height) {
        request.push(format!("{w}×{h}"));
    }
    if let Some(n) = job.num_outputs {
        request.push(if n == 1 {
            "1 image".into()
        } else {
            format!("{n} images")
        });
    }
    if let Some(format) = &job.output_format {
        request.push(format.clone());
    }
    if let Some(seed) = job.seed {
        request.push(format!("seed {seed}"));
    }
    if !request.is_empty() {
        let _ = writeln!(out, "request   {}", request.join(", "));
    }
    if let Some(created) = &job.created_at {
        let _ = writeln!(out, "created   {created}");
    }
    if let Some(updated) = &job.updated_at {
        let _ = writeln!(out, "updated   {updated}");
    }
    if job.status == "succeeded" {
        let _ = writeln!(out, "images    {} (mediagen open {})", job.media.len(), job.job_id);
    }
    Ok(out)
}

pub async fn jobs(
    api: &Api,
    status: Option<Status>,
    limit: Option<u32>,
    cursor: Option<&str>,
    json: bool,
) -> Result<String, Error> {
    let list = api.jobs(status.map(Status::as_str), limit, cursor).await?;
    if json {
        return Ok(json_line(&list.raw));
    }
    let list = list.value;
    if list.jobs.is_empty() {
        eprintln!("no jobs");
    }
    let mut out = String::new();
    if !list.jobs.is_empty() {
        let _ = writeln!(
            out,
            "{:<36}  {:<10}  {:<24}  {:>9}  {:>1}  {:<4}  PROMPT",
            "JOB", "STATUS", "CREATED", "SIZE", "N", "FMT"
        );
    }
    for job in &list.jobs {
        let size = match (job.width, job.height) {
            (Some(w), Some(h)) => format!("{w}×{h}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<36}  {:<10}  {:<24}  {:>9}  {:>1}  {:<4}  {}",
            job.job_id,
            job.status,
            job.created_at.as_deref().unwrap_or(""),
            size,
            job.num_outputs.map(|n| n.to_string()).unwrap_or_default(),
            job.output_format.as_deref().unwrap_or(""),
            truncate(&one_line(job.prompt.as_deref().unwrap_or("")), 48)
        );
    }
    if let Some(cursor) = &list.next_cursor {
        eprintln!("more: mediagen jobs --cursor {cursor}");
    }
    Ok(out)
}

pub async fn cancel(api: &Api, job_id: &str, json: bool) -> Result<String, Error> {
    let answer = api.cancel(job_id).await?;
    if json {
        return Ok(json_line(&answer.raw));
    }
    if answer.status == reqwest::StatusCode::ACCEPTED || answer.value.cancel_requested {
        return Ok(format!(
            "job {job_id}: cancel requested; it is {} and stops at its next step\n",
            answer.value.status
        ));
    }
    Ok(format!("job {job_id} {}\n", answer.value.status))
}

/// One line per model, aligned: id (the default marked), provider, price per image, sizes.
pub async fn models(api: &Api, json: bool) -> Result<String, Error> {
    let list = api.models().await?;
    if json {
        return Ok(json_line(&list.raw));
    }
    let models = list.value.data;
    if models.is_empty() {
        eprintln!("no models");
        return Ok(String::new());
    }
    let names: Vec<String> = models
        .iter()
        .map(|m| {
            if m.default {
                format!("{} (default)", m.id)
            } else {
                m.id.clone()
            }
        })
        .collect();
    let prices: Vec<String> = models.iter().map(|m| dollars(m.price_per_image_usd)).collect();
    let name_width = names.iter().map(|n| n.chars().count()).chain([5]).max().unwrap_or(5);
    let provider_width = models
        .iter()
        .map(|m| m.owned_by.chars().count())
        .chain([8])
        .max()
        .unwrap_or(8);
    let price_width = prices.iter().map(|p| p.chars().count()).chain([11]).max().unwrap_or(11);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$}  {:<provider_width$}  {:>price_width$}  SIZES",
        "MODEL", "PROVIDER", "PRICE/IMAGE"
    );
    for ((model, name), price) in models.iter().zip(&names).zip(&prices) {
        let sizes = if model.sizes.is_empty() {
            "any size".to_owned()
        } else {
            model.sizes.join(", ")
        };
        let _ = writeln!(
            out,
            "{name:<name_width$}  {:<provider_width$}  {price:>price_width$}  {sizes}",
            model.owned_by
        );
    }
    Ok(out)
}

/// `$0.003`, `$0.040`; more decimals only when the price has them.
fn dollars(price: Option<f64>) -> String {
    let Some(price) = price.filter(|p| p.is_finite()) else {
        return "?".to_owned();
    };
    let mut text = format!("{price:.6}");
    while text.ends_with('0') && text.len() - text.find('.').map_or(0, |dot| dot + 1) > 3 {
        text.pop();
    }
    format!("${text}")
}

fn json_line(value: &Value) -> String {
    format!("{value}\n")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(chars - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_follow_the_content_type_then_the_format() {
        assert_eq!(extension(Some("image/webp"), Some("png")), "webp");
        assert_eq!(extension(Some("image/jpeg; q=1"), None), "jpg");
        assert_eq!(extension(None, Some("jpg")), "jpg");
        assert_eq!(extension(Some("application/octet-stream"), None), "png");
    }

    #[test]
    fn prices_keep_three_decimals_and_any_more_they_have() {
        assert_eq!(dollars(Some(0.0)), "$0.000");
        assert_eq!(dollars(Some(0.04)), "$0.040");
        assert_eq!(dollars(Some(0.0035)), "$0.0035");
        assert_eq!(dollars(Some(1.5)), "$1.500");
        assert_eq!(dollars(None), "?");
    }

    #[test]
    fn long_prompts_are_cut_on_characters() {
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
