//! Follow a job for a client, as Server-Sent Events (docs/design.md, "Progress stream"): read its
//! record at most once a poll, send each event it has newly produced, keep the connection alive
//! with a heartbeat, and end at the job's end or when the connection has been open as long as it
//! may, telling the client to reconnect.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::auth::Caller;
use crate::domain::ids::JobId;
use crate::domain::job::Job;
use crate::domain::keys::KeyHash;
use crate::domain::stream::{self, StreamEvent};
use crate::ports::{JobStore, KeyStore, StoreError};

/// How often an open stream reads its job: the price of a stream is one read a poll.
pub const POLL: Duration = Duration::from_secs(1);

/// How many streams one signed link may hold open at once: as many as a key's default open
/// waits, so that a leaked link holds no more of the stream function than a key does.
pub const LINK_STREAMS: u32 = crate::domain::limits::KeyLimits::DEFAULT_CONCURRENT_WAITS;

/// How long past a stream's longest an open count is kept, unless another stream starts: a
/// count whose function died in a stream is not kept for ever.
const HOLD_MARGIN: Duration = Duration::from_secs(30);

/// How a stream paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTiming {
    /// The longest the client hears nothing; at most 15 s, inside what proxies keep open.
    pub heartbeat: Duration,
    /// The longest one connection stays open: inside API Gateway's and the function's limits.
    pub longest: Duration,
}

/// Where a stream's text goes; it fails once the client is gone.
pub trait EventSink {
    fn send(&mut self, text: String) -> impl Future<Output = Result<(), ClientGone>> + Send;
}

/// The client closed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientGone;

/// How a stream ended, and how many times it read its job: what it cost
/// (`scripts/bench/bench.py streams` reads both from the function's log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Followed {
    pub end: StreamEnd,
    pub reads: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The job is final and its last event sent.
    Done,
    /// The connection was open as long as it may; the client was told to reconnect.
    Reconnect,
    /// The job's record is gone (its retention ended).
    Gone,
    ClientGone,
}

pub struct StreamService<S> {
    store: S,
    timing: StreamTiming,
}

impl<S: JobStore> StreamService<S> {
    pub fn new(store: S, timing: StreamTiming) -> Self {
        Self { store, timing }
    }

    /// The job a stream is asked for: the caller's, or with a signed link (no caller) the job
    /// the link names.
    pub async fn job(&self, caller: Option<&Caller>, id: JobId) -> Result<Option<Job>, StoreError> {
        let job = self.store.job(id).await?;
        Ok(job.filter(|job| caller.is_none_or(|caller| job.owner == caller.owner)))
    }

    /// Sends `job`'s events from the `first` on, as `render` writes them, then follows the job.
    pub async fn follow(
        &self,
        job: Job,
        first: usize,
        render: impl Fn(usize, &StreamEvent) -> String + Send,
        sink: &mut impl EventSink,
    ) -> Followed {
        let id = job.id;
        follow(job, first, self.timing, || self.store.job(id), render, sink).await
    }
}

impl<S: JobStore + KeyStore> StreamService<S> {
    /// Starts one stream held by `holder` (a key, or a signed link), unless it holds `limit`
    /// open already: an open stream holds a function instance, as a `Prefer: wait` does, and is
    /// counted with those (docs/design.md, "Rate limits").
    pub async fn open(&self, holder: &KeyHash, limit: u32) -> Result<bool, StoreError> {
        self.store
            .start_wait(holder, limit, Utc::now(), self.timing.longest + HOLD_MARGIN)
            .await
    }

    /// Ends a stream [`StreamService::open`] started.
    pub async fn close(&self, holder: &KeyHash) {
        if let Err(err) = self.store.end_wait(holder).await {
            // Taken as stale once no stream or wait of the holder has started for a while.
            tracing::warn!(error = %err, "could not end the stream's hold");
        }
    }
}

/// The stream's loop, apart from the store: `read` reads the job again.
async fn follow<R, F>(
    mut job: Job,
    first: usize,
    timing: StreamTiming,
    read: R,
    render: impl Fn(usize, &StreamEvent) -> String + Send,
    sink: &mut impl EventSink,
) -> Followed
where
    R: Fn() -> F,
    F: Future<Output = Result<Option<Job>, StoreError>>,
{
    let opened = Instant::now();
    let mut next = first;
    let mut last_sent = opened;
    let mut reads = 0;
    loop {
        let events = stream::events(&job);
        for (index, event) in events.iter().enumerate().skip(next) {
            if sink.send(render(index, event)).await.is_err() {
                return Followed {
                    end: StreamEnd::ClientGone,
                    reads,
                };
            }
            last_sent = Instant::now();
        }
        next = next.max(events.len());
        if job.status.is_final() {
            return Followed {
                end: StreamEnd::Done,
                reads,
            };
        }
        tokio::time::sleep(POLL).await;
        let now = Instant::now();
        if now.duration_since(opened) >= timing.longest {
            let _ = sink.send(stream::reconnect(POLL.as_millis() as u64)).await;
            return Followed {
                end: StreamEnd::Reconnect,
                reads,
            };
        }
        if now.duration_since(last_sent) >= timing.heartbeat {
            if sink.send(stream::HEARTBEAT.to_owned()).await.is_err() {
                return Followed {
                    end: StreamEnd::ClientGone,
                    reads,
                };
            }
            last_sent = now;
        }
        reads += 1;
        match read().await {
            Ok(Some(read)) => job = read,
            Ok(None) => {
                return Followed {
                    end: StreamEnd::Gone,
                    reads,
                };
            }
            // The store's trouble is passing, as a poll's is: the next poll reads again.
            Err(err) => tracing::warn!(job_id = %job.id, %err, "a stream could not read its job"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Mutex;

    use chrono::Utc;

    use super::*;
    use crate::domain::generation::tests::sample_request;
    use crate::domain::job::JobStatus;
    use crate::domain::keys::tests::sample_owner;

    #[derive(Default)]
    struct Recorded(Vec<(Instant, String)>);

    impl EventSink for Recorded {
        async fn send(&mut self, text: String) -> Result<(), ClientGone> {
            self.0.push((Instant::now(), text));
            Ok(())
        }
    }

    fn timing() -> StreamTiming {
        StreamTiming {
            heartbeat: Duration::from_secs(5),
            longest: Duration::from_secs(60),
        }
    }

    fn queued() -> Job {
        Job::new(sample_owner(), sample_request(), Utc::now(), Duration::from_secs(600))
    }

    fn render(index: usize, event: &StreamEvent) -> String {
        format!("{index}:{}", event.name())
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_reads_at_most_once_a_poll_and_ends_with_the_job() {
        let reads = Cell::new(0u32);
        let started = Instant::now();
        let job = queued();
        let read = || {
            reads.set(reads.get() + 1);
            let mut job = job.clone();
            let elapsed = started.elapsed().as_secs();
            if elapsed >= 3 {
                job.status = JobStatus::Processing;
                job.attempts = 1;
                job.started_at = Some(Utc::now());
            }
            if elapsed >= 12 {
                job.status = JobStatus::Succeeded;
            }
            async move { Ok(Some(job)) }
        };
        let mut sink = Recorded::default();
        let followed = follow(job.clone(), 0, timing(), read, render, &mut sink).await;
        assert_eq!(followed.end, StreamEnd::Done);
        assert_eq!(followed.reads, reads.get());
        let elapsed = started.elapsed();
        assert!(
            reads.get() as u64 <= elapsed.as_secs(),
            "{} reads in {elapsed:?}",
            reads.get()
        );
        let texts: Vec<&str> = sink.0.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "0:status",
                "1:status",
                "2:logs",
                ": keep-alive\n\n",
                "3:status",
                "4:done"
            ]
        );
        // The heartbeat came 5 s after the last event, at 8 s.
        assert_eq!(sink.0[3].0.duration_since(started), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_resumes_after_the_last_event_seen_and_ends_by_asking_to_reconnect() {
        let mut job = queued();
        job.status = JobStatus::Processing;
        job.attempts = 1;
        let read = || {
            let job = job.clone();
            async move { Ok(Some(job)) }
        };
        let mut sink = Recorded::default();
        let followed = follow(job.clone(), 2, timing(), read, render, &mut sink).await;
        assert_eq!(followed.end, StreamEnd::Reconnect);
        assert_eq!(sink.0[0].1, "2:logs");
        assert!(
            sink.0.last().is_some_and(|(at, text)| text.starts_with("retry: 1000\n")
                && at.duration_since(sink.0[0].0) == Duration::from_secs(60))
        );
        assert_eq!(sink.0.iter().filter(|(_, text)| text.starts_with(':')).count(), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_fails_a_read_is_read_again_at_the_next_poll() {
        let calls = Mutex::new(0);
        let job = queued();
        let read = || {
            let mut calls = calls.lock().unwrap();
            *calls += 1;
            let answer = match *calls {
                1 => Err(StoreError::Unavailable("throttled".into())),
                _ => {
                    let mut canceled = job.clone();
                    canceled.status = JobStatus::Canceled;
                    Ok(Some(canceled))
                }
            };
            async move { answer }
        };
        let mut sink = Recorded::default();
        assert_eq!(
            follow(job.clone(), 0, timing(), read, render, &mut sink).await.end,
            StreamEnd::Done
        );
        assert_eq!(*calls.lock().unwrap(), 2);
        assert_eq!(sink.0.last().map(|(_, text)| text.as_str()), Some("2:done"));
    }
}
