//! What the cluster keeps in JetStream, and the calls on it (run on the gateway):
//!
//! - the stream `SWARM_JOBS` (work queue, subjects `swarm.jobs.<job>`): one message a
//!   document, deduplicated by its id `<job>.<doc>`; workers share one durable pull
//!   consumer, `workers`, with a short ack deadline kept alive by in-progress acks;
//! - the stream `SWARM_BLOBS`: the PDFs, named by their content hash (SHA-256, hex), so
//!   identical files are stored once; each job's manifest, `job-<job>`. A blob is its
//!   chunks (`swarm.blobs.<name>.<k>`, each under the server's largest message) and then
//!   a head (`swarm.blobs.<name>.head`: length, chunks, SHA-256), read back by direct
//!   gets: a head seen means every chunk is stored, and reading makes no consumer
//!   (JetStream's object store makes one per read, and a worker reading hundreds of
//!   documents reached the server's limit on them);
//! - the stream `SWARM_POISON`: the server's advisories of documents that ran out of
//!   deliveries, kept until the lease holder reports them (see [`super::poison`]);
//! - the stream `SWARM_RESULTS` (subjects `swarm.results.<job>.<doc>`): each document's
//!   line, published only where its subject has none yet, so the first stored result
//!   wins and a late duplicate is refused by the server. A line too large for one
//!   message is a blob named by its content, `result-<SHA-256>`, and its message says so.

use super::ClusterError;
use async_nats::jetstream::{self, consumer, stream};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

pub(crate) const JOBS: &str = "SWARM_JOBS";
pub(crate) const RESULTS: &str = "SWARM_RESULTS";
pub(crate) const BLOBS: &str = "SWARM_BLOBS";
pub(crate) const WORKERS: &str = "workers";
/// The stream that keeps the server's max-deliveries advisories for the workers'
/// consumer (see [`super::poison`]).
pub(crate) const POISON: &str = "SWARM_POISON";
/// Header naming the blob that holds a result too large for its message.
pub(crate) const RESULT_OBJECT: &str = "Swarm-Result-Object";

/// One document of a job, as published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DocJob {
    /// The job.
    pub(crate) job: String,
    /// The document's number in the job (from 0).
    pub(crate) doc: u64,
    /// The path as the submitter named it (the line's `path`).
    pub(crate) path: String,
    /// The content hash (hex): the blob to run.
    pub(crate) hash: String,
    /// The document's time budget, ms.
    pub(crate) timeout_ms: u64,
}

/// What a blob's head says.
#[derive(Debug, Serialize, Deserialize)]
struct BlobHead {
    len: u64,
    chunks: u64,
    sha256: String,
}

/// A job's documents, kept for `swarm submit --resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// By document number: its path and hash (`None` where the submitter could not read
    /// the file; its line was written at once).
    pub(crate) docs: Vec<(String, Option<String>)>,
}

pub(crate) fn jobs_subject(job: &str) -> String {
    format!("swarm.jobs.{job}")
}

pub(crate) fn result_subject(job: &str, doc: u64) -> String {
    format!("swarm.results.{job}.{doc}")
}

/// The document number at the end of a result's subject.
pub(crate) fn doc_of_subject(subject: &str) -> Option<u64> {
    subject.rsplit('.').next()?.parse().ok()
}

/// Whether `s` may be a job's name: a subject token of letters, digits, `-` and `_`.
pub(crate) fn valid_job(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn err(what: &str) -> impl FnOnce(String) -> ClusterError + '_ {
    move |e| ClusterError::Nats(format!("{what}: {e}"))
}

/// The JetStream side, connected.
#[derive(Clone)]
pub(crate) struct Nats {
    pub(crate) js: jetstream::Context,
    pub(crate) blobs: stream::Stream,
    /// The largest message the server takes.
    pub(crate) max_payload: usize,
    /// Copies of each bucket this process creates: as many as the jobs stream has.
    pub(crate) replicas: usize,
}

/// The longest one try of a call on the server may take before it counts as failed.
const TRY_LIMIT: Duration = Duration::from_secs(15);

/// Runs `op` until it succeeds, trying again after a pause (100 ms, doubling up to 2 s)
/// while `patience` lasts; each try is cut off after [`TRY_LIMIT`]. A link that drops, a
/// server that dies, a stream whose leader is being elected: each costs a wait, not an
/// error. Bad usage is never tried again.
pub(crate) async fn persist<T, F, Fut>(
    what: &str,
    patience: Duration,
    op: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClusterError>>,
{
    persist_with(what, patience, TRY_LIMIT, op).await
}

/// [`persist`], each try cut off after `limit` (a transfer whose time grows with its
/// size).
pub(crate) async fn persist_with<T, F, Fut>(
    what: &str,
    patience: Duration,
    limit: Duration,
    mut op: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClusterError>>,
{
    let start = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut failed = 0u32;
    loop {
        let e = match tokio::time::timeout(limit, op()).await {
            Ok(Ok(v)) => {
                if failed > 0 {
                    tracing::info!(failed, "{what}: done");
                }
                return Ok(v);
            }
            Ok(Err(e @ ClusterError::Usage(_))) => return Err(e),
            Ok(Err(e)) => e,
            Err(_) => ClusterError::Nats(format!("{what}: no answer within {limit:?}")),
        };
        failed += 1;
        if start.elapsed() + pause > patience {
            return Err(e);
        }
        if failed == 1 || failed % 10 == 0 {
            tracing::warn!(error = %e, failed, "{what}: trying again");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Connects to the servers `urls` (comma-separated: the client goes to another when one
/// fails) and makes sure the streams exist, creating each with `replicas` copies (1 on a
/// single server, 3 on a cluster of three or more). A cluster still electing its leaders
/// is waited for, up to a minute.
pub(crate) async fn connect(urls: String, replicas: usize) -> Result<Nats, ClusterError> {
    let servers: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        return Err(ClusterError::Usage("--nats: no server named".into()));
    }
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        // A server cut off without a word is given up after two pings unanswered.
        .ping_interval(Duration::from_secs(5))
        .name("neuralflow-swarm")
        .connect(servers.as_slice())
        .await
        .map_err(|e| ClusterError::Nats(format!("connecting to {urls}: {e}")))?;
    let max_payload = client.server_info().max_payload;
    if replicas > 1 && client.server_info().cluster.is_none() {
        return Err(ClusterError::Usage(format!(
            "--replicas {replicas}: the server is not part of a cluster (1 there)"
        )));
    }
    let js = jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(10))
        .build(client);
    let replicas = replicas.max(1);
    let configs = [
        stream::Config {
            name: JOBS.into(),
            subjects: vec!["swarm.jobs.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(3600),
            num_replicas: replicas,
            ..Default::default()
        },
        stream::Config {
            name: RESULTS.into(),
            subjects: vec!["swarm.results.>".into()],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(7 * 24 * 3600),
            num_replicas: replicas,
            ..Default::default()
        },
        stream::Config {
            name: POISON.into(),
            subjects: vec![format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS}.{WORKERS}"
            )],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        },
        stream::Config {
            name: BLOBS.into(),
            subjects: vec!["swarm.blobs.>".into()],
            storage: stream::StorageType::File,
            allow_direct: true,
            max_messages_per_subject: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            num_replicas: replicas,
            ..Default::default()
        },
    ];
    // In the order above: the jobs stream first (the lease bucket is kept as it is), the
    // blobs stream last (kept at hand).
    let mut streams = Vec::with_capacity(configs.len());
    for c in configs {
        let what = format!("the stream {}", c.name);
        let s = persist(&what, Duration::from_secs(60), || {
            let (js, c) = (js.clone(), c.clone());
            async move {
                js.get_or_create_stream(c)
                    .await
                    .map_err(|e| ClusterError::Nats(e.to_string()))
            }
        })
        .await
        .map_err(|e| err(&what)(e.to_string()))?;
        let kept = s.cached_info().config.num_replicas;
        if kept < replicas {
            tracing::warn!(
                stream = s.cached_info().config.name,
                replicas = kept,
                asked = replicas,
                "the stream was made before with fewer copies, and keeps them"
            );
        }
        streams.push(s);
    }
    let jobs_replicas = streams
        .first()
        .map_or(replicas, |s| s.cached_info().config.num_replicas.max(1));
    let blobs = streams
        .pop()
        .ok_or_else(|| ClusterError::Nats("no blobs stream".into()))?;
    Ok(Nats {
        js,
        blobs,
        max_payload,
        replicas: jobs_replicas,
    })
}

impl Nats {
    /// The workers' consumer, made with these settings if it is not there yet.
    pub(crate) async fn workers(
        &self,
        ack_wait: Duration,
        max_deliver: i64,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, ClusterError> {
        persist("the workers' consumer", Duration::from_secs(60), || async {
            let stream = self
                .js
                .get_stream(JOBS)
                .await
                .map_err(|e| err("the jobs stream")(e.to_string()))?;
            stream
                .get_or_create_consumer(
                    WORKERS,
                    consumer::pull::Config {
                        durable_name: Some(WORKERS.into()),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait,
                        max_deliver,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| err("the workers' consumer")(e.to_string()))
        })
        .await
    }

    /// Stores `bytes` as blob `name` (a subject token) unless it is there: `true` if
    /// this call stored it.
    pub(crate) async fn put_blob_once(
        &self,
        name: String,
        bytes: Vec<u8>,
    ) -> Result<bool, ClusterError> {
        if self.has_blob(&name).await? {
            return Ok(false);
        }
        let head = format!("swarm.blobs.{name}.head");
        let bad = |e: String| ClusterError::Nats(format!("storing {name}: {e}"));
        let chunk = self.max_payload.saturating_sub(4096).max(4096);
        // A window of chunks at a time, their acknowledgements awaited before the next
        // (the client lets only so many publishes wait for theirs).
        let chunks: Vec<&[u8]> = bytes.chunks(chunk).collect();
        for (w, window) in chunks.chunks(256).enumerate() {
            let mut acks = Vec::with_capacity(window.len());
            for (k, c) in window.iter().enumerate() {
                let p = jetstream::message::PublishMessage::build().payload(c.to_vec().into());
                let subject = format!("swarm.blobs.{name}.{}", w * 256 + k);
                acks.push(
                    self.js
                        .send_publish(subject, p)
                        .await
                        .map_err(|e| bad(e.to_string()))?,
                );
            }
            for a in acks {
                a.await.map_err(|e| bad(e.to_string()))?;
            }
        }
        let h = BlobHead {
            len: bytes.len() as u64,
            chunks: bytes.len().div_ceil(chunk) as u64,
            sha256: super::worker::hash_hex(&bytes),
        };
        let payload = serde_json::to_vec(&h).map_err(|e| bad(e.to_string()))?;
        let p = jetstream::message::PublishMessage::build().payload(payload.into());
        self.js
            .send_publish(head, p)
            .await
            .map_err(|e| bad(e.to_string()))?
            .await
            .map_err(|e| bad(e.to_string()))?;
        Ok(true)
    }

    /// Whether blob `name` is stored (its head is); an error where the server could not
    /// say.
    pub(crate) async fn has_blob(&self, name: &str) -> Result<bool, ClusterError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        match self
            .blobs
            .direct_get_last_for_subject(format!("swarm.blobs.{name}.head"))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(false),
            Err(e) => Err(ClusterError::Nats(format!("looking for {name}: {e}"))),
        }
    }

    /// Blob `name`, whole, checked against its head's length and hash.
    pub(crate) async fn get_blob(&self, name: String) -> Result<Vec<u8>, ClusterError> {
        let bad = |e: String| ClusterError::Nats(format!("reading {name}: {e}"));
        let head = self
            .blobs
            .direct_get_last_for_subject(format!("swarm.blobs.{name}.head"))
            .await
            .map_err(|e| bad(e.to_string()))?;
        let h: BlobHead = serde_json::from_slice(&head.payload).map_err(|e| bad(e.to_string()))?;
        let mut out = Vec::with_capacity(usize::try_from(h.len).unwrap_or(0).min(1 << 30));
        for k in 0..h.chunks {
            let m = self
                .blobs
                .direct_get_last_for_subject(format!("swarm.blobs.{name}.{k}"))
                .await
                .map_err(|e| bad(format!("chunk {k}: {e}")))?;
            out.extend_from_slice(&m.payload);
        }
        if out.len() as u64 != h.len || super::worker::hash_hex(&out) != h.sha256 {
            return Err(bad("its chunks do not match its head".into()));
        }
        Ok(out)
    }

    /// Stores document `doc`'s line unless one is stored: `true` if this one was.
    pub(crate) async fn store_result(
        &self,
        job: &str,
        doc: u64,
        line: Vec<u8>,
    ) -> Result<bool, ClusterError> {
        let subject = result_subject(job, doc);
        // Room for the subject and headers in the message.
        let msg = if line.len() + 1024 > self.max_payload {
            // Named by its content: two workers storing different lines for the document
            // (one timed out, say) write two blobs, not one of interleaved chunks.
            let name = format!("result-{}", super::worker::hash_hex(&line));
            self.put_blob_once(name.clone(), line).await?;
            jetstream::message::PublishMessage::build().header(RESULT_OBJECT, name.as_str())
        } else {
            jetstream::message::PublishMessage::build().payload(line.into())
        };
        let ack = self
            .js
            .send_publish(subject, msg.expected_last_subject_sequence(0))
            .await
            .map_err(|e| err("publishing a result")(e.to_string()))?;
        match ack.await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                Ok(false)
            }
            Err(e) => Err(err("publishing a result")(e.to_string())),
        }
    }

    /// A result message's line (from its blob when it says so).
    pub(crate) async fn line_of(&self, msg: &jetstream::Message) -> Result<Vec<u8>, ClusterError> {
        let object = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(RESULT_OBJECT))
            .map(|v| v.as_str().to_owned());
        match object {
            Some(name) => self.get_blob(name).await,
            None => Ok(msg.payload.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_names() {
        assert_eq!(result_subject("j1", 7), "swarm.results.j1.7");
        assert_eq!(doc_of_subject("swarm.results.j1.7"), Some(7));
        assert_eq!(doc_of_subject("swarm.results.j1.x"), None);
        assert!(valid_job("a-B_9"));
        for bad in ["", "a.b", "a b", "*", ">", &"x".repeat(65)] {
            assert!(!valid_job(bad), "{bad}");
        }
    }
}
