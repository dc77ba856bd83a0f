//! Waiting for a job to be final. The job's progress stream (docs/api.md) is followed first: the
//! progress line shows each move as the API sends it, and the whole job is read at its `done`.
//! Without it (an API older than the stream), or if it breaks, the API holds `GET
//! /media/jobs/{id}` with `Prefer: wait=N` until the job is final or N seconds pass; while the job
//! is queued the hold is short, so the progress line sees it start. An API that does not apply
//! the preference (no `Preference-Applied: wait`) is polled on `GET /media/status/{id}` every
//! second (or its `Retry-After`), and the whole job read once it is final.

use std::time::{Duration, Instant};

use crate::api::{Answer, Api, Job};
use crate::error::Error;
use crate::events::Events;
use crate::progress::Progress;

/// The hold while a job is queued: short, so that the line shows when it starts.
const QUEUED_HOLD: u64 = 1;
/// The hold while it runs: the API's longest.
const RUNNING_HOLD: u64 = crate::api::MAX_WAIT_SECONDS;

/// Waits until the job is final; answers the whole job (with its media).
pub async fn until_final(
    api: &Api,
    job_id: &str,
    timeout: Duration,
    progress: &Progress,
    started: Instant,
) -> Result<Answer<Job>, Error> {
    let mut state = String::from("queued");
    let remaining = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(remaining, follow(api, job_id, progress, &mut state)).await {
        Ok(Ok(())) => return Ok(api.job(job_id, None).await?.0),
        Err(_) => {
            return Err(Error::Timeout {
                job_id: job_id.into(),
                state,
                seconds: timeout.as_secs(),
            });
        }
        // No stream, or it broke: polling says what there is to say.
        Ok(Err(_)) => {}
    }
    let mut long_poll = true;
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(Error::Timeout {
                job_id: job_id.into(),
                state,
                seconds: timeout.as_secs(),
            });
        }
        if long_poll {
            let hold = if state == "processing" {
                RUNNING_HOLD
            } else {
                QUEUED_HOLD
            };
            let hold = hold.min(remaining.as_secs().max(1));
            let asked = Instant::now();
            let (answer, applied) = api.job(job_id, Some(hold)).await?;
            progress.state(&answer.value.status, answer.value.attempts);
            state.clone_from(&answer.value.status);
            if answer.value.is_final() {
                return Ok(answer);
            }
            if !applied {
                long_poll = false;
                sleep_for(answer.retry_after(), remaining).await;
            } else if asked.elapsed() < Duration::from_millis(500) {
                // Applied, yet answered at once with a job that is not final: do not spin.
                sleep_for(answer.retry_after(), remaining).await;
            }
        } else {
            let answer = api.status(job_id).await?;
            progress.state(&answer.value.status, answer.value.attempts);
            state.clone_from(&answer.value.status);
            if answer.value.is_final() {
                let (job, _) = api.job(job_id, None).await?;
                return Ok(job);
            }
            sleep_for(answer.retry_after(), remaining).await;
        }
    }
}

/// Follows the job's progress stream to its `done`, reconnecting after the last event seen when
/// the API ends a stream early (as it does after some minutes).
async fn follow(api: &Api, job_id: &str, progress: &Progress, state: &mut String) -> Result<(), Error> {
    let mut last_seen = None;
    loop {
        let mut events = Events::open(api, job_id, last_seen).await?;
        let before = last_seen;
        while let Some(event) = events.next().await? {
            last_seen = event.id.or(last_seen);
            match event.name.as_str() {
                "status" => {
                    if let Some(status) = serde_json::from_str::<serde_json::Value>(&event.data)
                        .ok()
                        .and_then(|data| data["status"].as_str().map(str::to_owned))
                    {
                        progress.message(status.clone());
                        *state = status;
                    }
                }
                "logs" => progress.message(format!("{state} · {}", event.data)),
                "done" => return Ok(()),
                _ => {}
            }
        }
        // A stream the API ends at once, with nothing new, is not followed again and again.
        if last_seen == before {
            return Err(Error::Protocol("the progress stream ended with no event".into()));
        }
    }
}

/// Sleeps as the API asked (`Retry-After`), between 1 and 5 seconds, within what time is left.
async fn sleep_for(retry_after: Option<u64>, remaining: Duration) {
    let seconds = retry_after.unwrap_or(1).clamp(1, 5);
    tokio::time::sleep(Duration::from_secs(seconds).min(remaining)).await;
}
