//! Leader election through a key-value lease, for what must run once per cluster: a key
//! in the bucket `swarm-leases`, whose entries expire after the lease's time (the
//! bucket's `max_age`). A worker takes the lease by creating the key (only if absent),
//! keeps it by updating it at the revision it last wrote (every third of the time), and
//! loses it when an update is refused or it stops renewing; then the entry expires and
//! another worker's create succeeds. Stopping, the holder deletes the key at its own
//! revision, so the next takes over at once.

use super::ClusterError;
use async_nats::jetstream::{self, kv};
use std::time::{Duration, Instant};

/// The bucket.
pub const LEASES: &str = "swarm-leases";

/// One lease, as one worker sees it.
pub struct Lease {
    store: kv::Store,
    key: String,
    holder: String,
    ttl: Duration,
    /// The revision this worker last wrote while it holds the lease.
    held: Option<u64>,
    /// When it last tried to take or renew it.
    last: Option<Instant>,
}

impl Lease {
    /// The lease `key`, lasting `ttl`, for `holder` (a name for logs and the entry).
    ///
    /// The bucket, where this call is the first to need it, is made with `replicas`
    /// copies (3 on a cluster).
    pub async fn new(
        js: &jetstream::Context,
        key: &str,
        holder: String,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self, ClusterError> {
        let store = match js.get_key_value(LEASES).await {
            Ok(s) => s,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: LEASES.into(),
                    history: 1,
                    max_age: ttl,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: replicas.max(1),
                    ..Default::default()
                })
                .await
                .map_err(|e| ClusterError::Nats(format!("the lease bucket: {e}")))?,
        };
        // The bucket's max_age is the lease's time, whoever made it.
        let ttl = match store.status().await {
            Ok(s) if s.max_age() > Duration::ZERO => s.max_age(),
            _ => ttl,
        };
        Ok(Self {
            store,
            key: key.into(),
            holder,
            ttl,
            held: None,
            last: None,
        })
    }

    /// How long the lease lasts unrenewed (the bucket's, whoever made it).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes or renews the lease when due (at once after [`Lease::release`]); whether this
    /// worker holds it now.
    pub async fn tick(&mut self) -> bool {
        let due = self.last.is_none_or(|t| t.elapsed() >= self.ttl / 3);
        if !due {
            return self.held.is_some();
        }
        self.last = Some(Instant::now());
        let value = self.holder.clone();
        self.held = match self.held {
            Some(rev) => self.store.update(&self.key, value.into(), rev).await.ok(),
            None => self.store.create(&self.key, value.into()).await.ok(),
        };
        self.held.is_some()
    }

    /// Gives the lease up, if held.
    pub async fn release(&mut self) {
        if let Some(rev) = self.held.take() {
            let _ = self
                .store
                .delete_expect_revision(&self.key, Some(rev))
                .await;
        }
    }
}
