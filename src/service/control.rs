//! The status socket: how a running swarm is found and read from outside.
//!
//! Every `swarm run` and `swarm serve` listens on a Unix socket named by its pid,
//! `<dir>/<pid>.sock`, where `<dir>` is `$XDG_RUNTIME_DIR/neuralflow-swarm` or else
//! `/tmp/neuralflow-swarm-<uid>` (made mode 0700, so only its user reaches it). A client
//! connects, writes `view\n`, and reads one [`View`] as a JSON line. `swarm status` and
//! `swarm top` find a swarm by `--pid`, by `--socket`, or as the only one running.
//!
//! One observer thread ([`Observer::run`]) answers the socket and the in-process askers
//! (`/metrics`, through a [`Views`] handle) and keeps the throughput history: one sample
//! a second, the last two minutes. A look costs the swarm one status snapshot, taken
//! under the supervisor's lock for a few microseconds; the history costs one a second.

use super::view::{Sample, View};
use crossbeam_channel::{Receiver, Sender};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Samples the history keeps.
const HISTORY: usize = 120;

/// The folder of the status sockets of this user's swarms.
pub fn socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("neuralflow-swarm"),
        _ => {
            let uid = nix::unistd::getuid();
            PathBuf::from(format!("/tmp/neuralflow-swarm-{uid}"))
        }
    }
}

/// The status socket of the swarm whose supervisor has `pid`.
pub fn socket_path(pid: u32) -> PathBuf {
    socket_dir().join(format!("{pid}.sock"))
}

/// Why no swarm could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FindError {
    /// No swarm of this user is running.
    #[error("no running swarm found (no status socket in {0})")]
    NoneRunning(PathBuf),
    /// More than one: the caller must say which.
    #[error("several swarms are running (pids {0:?}); say which with --pid")]
    Several(Vec<u32>),
    /// The one named is not there.
    #[error("no swarm at {0}")]
    NotFound(PathBuf),
    /// It did not answer as a swarm does.
    #[error("{path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Binds `path` for a swarm's status socket, making its folder (0700) if needed and
/// taking over a socket left by a swarm that is gone.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match UnixListener::bind(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Err(e); // someone answers there
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        other => other,
    }
    .inspect(|_| {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    })
}

/// The pids of the swarms with a socket in [`socket_dir`], whose process still runs
/// (sockets of gone ones are removed).
pub fn running() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(socket_dir()) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid: u32 = name.strip_suffix(".sock")?.parse().ok()?;
            if Path::new(&format!("/proc/{pid}")).exists() {
                Some(pid)
            } else {
                let _ = std::fs::remove_file(e.path());
                None
            }
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The socket of the swarm asked for: `socket` if given, else that of `pid`, else the
/// only one running.
pub fn find(pid: Option<u32>, socket: Option<&Path>) -> Result<PathBuf, FindError> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    if let Some(pid) = pid {
        return Ok(socket_path(pid));
    }
    match running().as_slice() {
        [] => Err(FindError::NoneRunning(socket_dir())),
        [one] => Ok(socket_path(*one)),
        many => Err(FindError::Several(many.to_vec())),
    }
}

/// Reads the [`View`] of the swarm at `socket`.
pub fn fetch(socket: &Path) -> Result<View, FindError> {
    let io = |source| FindError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            FindError::NotFound(socket.to_path_buf())
        }
        _ => io(e),
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    s.write_all(b"view\n").map_err(io)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|e| io(std::io::Error::other(e)))
}

/// A handle that asks the observer thread for a [`View`] (with its history).
#[derive(Clone, Debug)]
pub struct Views(Sender<Sender<View>>);

impl Views {
    /// The current view, or `None` once the observer has stopped.
    pub fn get(&self) -> Option<View> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.0.send(tx).ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }
}

/// The observer thread's side: what it answers from.
pub struct Observer {
    asks: Receiver<Sender<View>>,
    history: VecDeque<Sample>,
}

impl Observer {
    /// An observer and the handle that asks it.
    pub fn new() -> (Self, Views) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            Self {
                asks: rx,
                history: VecDeque::with_capacity(HISTORY),
            },
            Views(tx),
        )
    }

    /// Answers `listener` (if any) and the [`Views`] handles with `view()` and the
    /// history, until `stop` is set.
    pub fn run(
        mut self,
        listener: Option<UnixListener>,
        stop: &AtomicBool,
        view: &dyn Fn() -> View,
    ) {
        if let Some(l) = &listener {
            let _ = l.set_nonblocking(true);
        }
        let mut next_sample = Instant::now();
        // Acquire: pairs with the Release store of whoever stops us (nothing else is
        // published through it; it only ends the loop).
        while !stop.load(Ordering::Acquire) {
            let now = Instant::now();
            if now >= next_sample {
                let v = view();
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(Sample {
                    at_s: v.uptime_s,
                    documents: v.documents_ok + v.documents_failed,
                    pages: v.pages,
                    tasks: v.tasks_ended(),
                });
                next_sample = now + Duration::from_secs(1);
            }
            let full = |mut v: View, h: &VecDeque<Sample>| {
                v.throughput = h.iter().copied().collect();
                v
            };
            if let Ok(reply) = self.asks.recv_timeout(Duration::from_millis(100)) {
                let _ = reply.send(full(view(), &self.history));
            }
            // A few clients a turn: a flood of them does not keep the loop from its stop.
            for _ in 0..16 {
                let Some(Ok((stream, _))) = listener.as_ref().map(|l| l.accept()) else {
                    break;
                };
                answer(stream, &full(view(), &self.history));
            }
        }
    }
}

/// Answers one client of the status socket, within a second.
fn answer(stream: UnixStream, v: &View) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    // A request is one short word: no more is read.
    let mut r = BufReader::new(std::io::Read::take(&stream, 64));
    if r.read_line(&mut line).is_err() || line.trim() != "view" {
        let _ = (&stream).write_all(b"{\"error\":\"ask with: view\"}\n");
        return;
    }
    if let Ok(mut json) = serde_json::to_vec(v) {
        json.push(b'\n');
        let _ = (&stream).write_all(&json);
    }
}

/// The observer of a swarm, started in `scope` beside the work: it answers the status
/// socket at `socket` (if one) and the returned [`Views`] until the returned flag is set.
pub struct Running<'a> {
    stop: &'a AtomicBool,
    /// The socket it answers on, removed when it stops.
    pub socket: Option<PathBuf>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        // Release: pairs with the observer loop's Acquire load.
        self.stop.store(true, Ordering::Release);
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Starts an observer thread in `scope` answering on the status socket at `socket` (if
/// it can be bound; a warning otherwise) with `view()`. Dropping the returned guard stops
/// it and removes the socket.
pub fn start<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    stop: &'env AtomicBool,
    socket: Option<PathBuf>,
    view: impl Fn() -> View + Send + 'scope,
) -> (Running<'env>, Views) {
    let listener = socket.as_ref().and_then(|p| match bind(p) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(socket = %p.display(), error = %e, "no status socket");
            None
        }
    });
    let bound = listener.is_some().then(|| socket.clone()).flatten();
    let (observer, views) = Observer::new();
    scope.spawn(move || observer.run(listener, stop, &view));
    (
        Running {
            stop,
            socket: bound,
        },
        views,
    )
}
