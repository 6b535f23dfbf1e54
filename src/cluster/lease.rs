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
pub(crate) const LEASES: &str = "swarm-leases";

/// One lease, as one worker sees it.
pub(crate) struct Lease {
    store: kv::Store,
    key: String,
    holder: String,
    ttl: Duration,
    /// The revision this worker last wrote while it holds the lease.
    held: Option<u64>,
    last: Option<Instant>,
}

impl Lease {
    /// The lease `key`, lasting `ttl`, for `holder` (a name for logs and the entry).
    pub(crate) async fn new(
        js: &jetstream::Context,
        key: &str,
        holder: String,
        ttl: Duration,
    ) -> Result<Self, ClusterError> {
        let store = match js.get_key_value(LEASES).await {
            Ok(s) => s,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: LEASES.into(),
                    history: 1,
                    max_age: ttl,
                    storage: jetstream::stream::StorageType::File,
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

    /// Takes or renews the lease when due; whether this worker holds it now.
    pub(crate) async fn tick(&mut self) -> bool {
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
    pub(crate) async fn release(&mut self) {
        if let Some(rev) = self.held.take() {
            let _ = self
                .store
                .delete_expect_revision(&self.key, Some(rev))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One holder at a time; the lease passes to another once its holder stops renewing
    /// (and the holder, renewing late, finds it lost), and at once when it is released.
    #[test]
    fn one_holder_at_a_time_and_the_lease_passes_on() {
        let dir = std::env::temp_dir().join(format!("nfswarm-lease-{}", std::process::id()));
        let server = match crate::cluster::server::LocalServer::start(&dir) {
            Ok(s) => s,
            Err(e) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: {e}");
                eprintln!("SKIPPED: {e}");
                return;
            }
        };
        let url = server.url.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let js = jetstream::new(async_nats::connect(url).await.unwrap());
            let ttl = Duration::from_secs(1);
            let mut a = Lease::new(&js, "k", "a".into(), ttl).await.unwrap();
            let mut b = Lease::new(&js, "k", "b".into(), ttl).await.unwrap();
            assert!(a.tick().await, "the first takes it");
            assert!(!b.tick().await, "the second does not");
            // a renews for a while; b keeps trying and never gets it.
            for _ in 0..6 {
                tokio::time::sleep(ttl / 3).await;
                assert!(a.tick().await, "renewed");
                assert!(!b.tick().await, "still a's");
            }
            // a stops renewing: past the lease's time, b takes it.
            tokio::time::sleep(ttl + ttl / 2).await;
            assert!(b.tick().await, "expired, taken over");
            assert!(!a.tick().await, "a finds it lost");
            // b gives it up: a gets it at once.
            b.release().await;
            a.last = None;
            assert!(a.tick().await, "released, taken at once");
        });
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
