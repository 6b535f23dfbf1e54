//! Documents that ran out of deliveries: each gets an error line, once per cluster.
//!
//! When a document has been delivered `max_deliver` times without an ack (every worker
//! that took it died, hung or was cut off), the server stops delivering it and publishes
//! a max-deliveries advisory. The stream `SWARM_POISON` keeps those advisories, so none
//! is lost while no worker leads. The worker that holds the lease `poison` (see
//! [`super::lease`]) reads them with the durable consumer `reporter`: for each, it reads
//! the document's message by its sequence, stores an error line for it (the first stored
//! line wins, as ever), removes the message from the work queue, and acks the advisory.

use super::lease::Lease;
use super::nats::{DocJob, Nats, JOBS, POISON};
use super::ClusterError;
use async_nats::jetstream::consumer;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(serde::Deserialize)]
struct Advisory {
    stream_seq: u64,
    deliveries: u64,
}

/// Runs on the gateway until `stop`: leads when it holds the lease, and then reports
/// documents out of deliveries. `reported` counts the error lines it stored.
pub(crate) async fn reporter(
    nats: Nats,
    holder: String,
    ttl: Duration,
    stop: Arc<AtomicBool>,
    reported: Arc<std::sync::atomic::AtomicU64>,
) {
    // The bucket, tried for until it is there (a cluster may still be electing leaders).
    let mut lease = loop {
        // Acquire: pairs with the Release store of whoever stops the worker.
        if stop.load(Ordering::Acquire) {
            return;
        }
        let made = Lease::new(&nats.js, "poison", holder.clone(), ttl, nats.replicas);
        match tokio::time::timeout(Duration::from_secs(15), made).await {
            Ok(Ok(l)) => break l,
            Ok(Err(e)) => tracing::warn!(error = %e, "no lease yet: trying again"),
            Err(_) => tracing::warn!("no lease yet (no answer): trying again"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut advisories = None;
    // Acquire: pairs with the Release store of whoever stops the worker.
    while !stop.load(Ordering::Acquire) {
        if !lease.tick().await {
            advisories = None;
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        if advisories.is_none() {
            advisories = consumer_of(&nats).await;
        }
        let Some(c) = &advisories else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        // Back before the lease is due again, whatever comes.
        let wait = (lease.ttl() / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        match report_some(&nats, c, wait).await {
            Ok(n) => {
                // Relaxed: a count, read once this task has ended.
                reported.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reporting poison documents");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    lease.release().await;
}

async fn consumer_of(nats: &Nats) -> Option<consumer::Consumer<consumer::pull::Config>> {
    let s = nats.js.get_stream(POISON).await.ok()?;
    s.get_or_create_consumer(
        "reporter",
        consumer::pull::Config {
            durable_name: Some("reporter".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .await
    .ok()
}

/// Reports the advisories that come within `wait`: how many lines it stored.
async fn report_some(
    nats: &Nats,
    c: &consumer::Consumer<consumer::pull::Config>,
    wait: Duration,
) -> Result<u64, ClusterError> {
    let bad = |e: String| ClusterError::Nats(format!("poison documents: {e}"));
    let mut batch = c
        .batch()
        .max_messages(16)
        .expires(wait)
        .messages()
        .await
        .map_err(|e| bad(e.to_string()))?;
    let jobs = nats
        .js
        .get_stream(JOBS)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let mut stored = 0;
    while let Some(Ok(m)) = batch.next().await {
        let Ok(a) = serde_json::from_slice::<Advisory>(&m.payload) else {
            let _ = m.ack().await;
            continue;
        };
        // The document's message, still in the work queue (never acked).
        if let Ok(raw) = jobs.get_raw_message(a.stream_seq).await {
            if let Ok(job) = serde_json::from_slice::<DocJob>(&raw.payload) {
                let err = crate::pdf::PdfError::new(
                    crate::pdf::ErrorKind::AgentCrashed,
                    format!(
                        "delivered {} times to workers, none of which stored a line",
                        a.deliveries
                    ),
                );
                let mut line = crate::pdf::DocResult::failed(job.path.clone(), err).line();
                line.push(b'\n');
                if nats.store_result(&job.job, job.doc, line).await? {
                    stored += 1;
                }
            }
            let _ = jobs.delete_message(a.stream_seq).await;
        }
        m.ack().await.map_err(|e| bad(e.to_string()))?;
    }
    Ok(stored)
}
