//! The one thread that talks to NATS: a tokio runtime of its own, on which the rest of
//! the process runs futures and waits for their results. The supervisor, the job and
//! the agents stay synchronous; only this thread holds the client.

use super::ClusterError;
use std::future::Future;

/// The gateway thread and a handle to its runtime.
pub(crate) struct Gateway {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// Starts the thread and its runtime.
    pub(crate) fn start() -> Result<Self, ClusterError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("swarm-nats".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                // Runs every future handed over until told to stop.
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| ClusterError::Gateway(format!("cannot start its thread: {e}")))?;
        let handle = rx
            .recv()
            .map_err(|_| ClusterError::Gateway("its thread ended at start".into()))?
            .map_err(|e| ClusterError::Gateway(format!("no runtime: {e}")))?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `fut` on the gateway's runtime, not waiting for it.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(fut);
    }

    /// Runs `fut` on the gateway's runtime and waits for its output.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, ClusterError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| ClusterError::Gateway("its runtime stopped".into()))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futures_run_on_the_gateway_thread_and_come_back() {
        let gw = Gateway::start().unwrap();
        let name = gw
            .call(async { std::thread::current().name().map(str::to_owned) })
            .unwrap();
        assert_eq!(name.as_deref(), Some("swarm-nats"));
        let slept = gw
            .call(async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                7
            })
            .unwrap();
        assert_eq!(slept, 7);
    }
}
