//! Checking an agent executable before any agent starts: it exists, may be executed, and
//! answers the probe with this build's layout version, so that a wrong path fails
//! `build()` with the path, not as a crash loop after the fact.
//!
//! The executable is the user's and may be anything: its answer is read through a bounded
//! buffer, it runs in its own process group (killed whole on a timeout), and its
//! environment tells it that it is being probed ([`PROBE_ENV`]), so that a program that is
//! its own agent but never reaches `serve_if_agent` cannot start supervisors recursively.

use crate::runtime::agent::{AGENT_FLAG, PROBE_ENV, PROBE_FLAG, SANDBOX_LINE};
use crate::runtime::sandbox::{MeasureState, SandboxPolicy, SandboxReport};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The most of a probe's output that is read; the rest is discarded.
const MAX_ANSWER: u64 = 64 * 1024;

/// What is wrong with an agent executable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// No file at the path.
    #[error(
        "does not exist (build it, give its path with SupervisorBuilder::agent_bin or \
         $SWARM_AGENT_BIN, or make the program its own agent with agent_current_exe)"
    )]
    Missing,
    /// Something other than a file.
    #[error("is not a file")]
    NotAFile,
    /// No execute permission.
    #[error("is not executable")]
    NotExecutable,
    /// It could not be started (or its metadata read).
    #[error("cannot be started: {0}")]
    Start(std::io::Error),
    /// No answer in time.
    #[error("did not answer the agent probe within {0:?}")]
    Timeout(Duration),
    /// It answered, but not as an agent.
    #[error(
        "is not a neuralflow-swarm agent: it did not answer the probe ({status}{}{stderr}); a \
         program that is its own agent must call neuralflow_swarm::agent::serve_if_agent \
         first thing in main",
        if stderr.is_empty() { "" } else { "; stderr: " }
    )]
    NotAnAgent {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The start of what it wrote on stderr.
        stderr: String,
    },
    /// An agent of another layout version.
    #[error(
        "speaks segment layout {found:?}, this build speaks {expected}: rebuild it with this \
         version of the crate"
    )]
    Layout {
        /// What it said.
        found: String,
        /// This build's.
        expected: u32,
    },
}

/// A probe under way: the executable started, its answer not yet read, so that the
/// supervisor sets up its segment and cgroups meanwhile.
pub(super) struct Probe {
    /// `None` once finished.
    child: Option<std::process::Child>,
    readers: Vec<crossbeam_channel::Receiver<Vec<u8>>>,
    deadline: Instant,
    timeout: Duration,
    sandbox: SandboxPolicy,
}

/// Starts probing `path`: checks the file and starts it. [`Probe::finish`] reads the
/// answer.
pub(super) fn start(
    path: &Path,
    timeout: Duration,
    sandbox: &SandboxPolicy,
) -> Result<Probe, ProbeError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ProbeError::Missing,
        _ => ProbeError::Start(e),
    })?;
    if !meta.is_file() {
        return Err(ProbeError::NotAFile);
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(ProbeError::NotExecutable);
    }
    let mut child = Command::new(path)
        .args([AGENT_FLAG, PROBE_FLAG])
        .args(sandbox.to_args())
        .env(PROBE_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(ProbeError::Start)?;
    // The pipes are read on threads of their own, each at most MAX_ANSWER bytes (the rest
    // drained and dropped), so a chatty executable neither blocks nor fills our memory.
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .map(|pipe| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("swarm-probe".into())
            .spawn(move || {
                let mut out = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = (&mut p).take(MAX_ANSWER).read_to_end(&mut out);
                    let _ = std::io::copy(&mut p, &mut std::io::sink());
                }
                let _ = tx.send(out);
            });
        spawned.map(|_| rx)
    })
    .collect::<Result<_, _>>()
    .map_err(ProbeError::Start)?;
    Ok(Probe {
        child: Some(child),
        readers,
        deadline: Instant::now() + timeout,
        timeout,
        sandbox: sandbox.clone(),
    })
}

impl Probe {
    /// Waits for the answer (until the probe's deadline); returns the task kinds served
    /// and how the sandbox stood in the probed process.
    pub(super) fn finish(mut self) -> Result<(Vec<u32>, SandboxReport), ProbeError> {
        let mut child = self.child.take().expect("a probe finishes once");
        let readers = std::mem::take(&mut self.readers);
        answer(
            &mut child,
            readers,
            self.deadline,
            self.timeout,
            &self.sandbox,
        )
    }
}

impl Drop for Probe {
    /// A probe given up (the supervisor failed to start meanwhile) is killed and reaped.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

/// Kills a probed executable's whole process group (a wrapper's children too) and reaps it.
fn kill_group(child: &mut std::process::Child) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until `fd` is readable, at most `left` (and at least a millisecond's poll).
fn wait_readable(fd: &std::os::fd::OwnedFd, left: Duration) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: `p` is one valid pollfd; an interrupted poll just returns early.
    unsafe { libc::poll(&mut p, 1, ms) };
}

fn answer(
    child: &mut std::process::Child,
    readers: Vec<crossbeam_channel::Receiver<Vec<u8>>>,
    deadline: Instant,
    timeout: Duration,
    sandbox: &SandboxPolicy,
) -> Result<(Vec<u32>, SandboxReport), ProbeError> {
    // The child stays ours until it is reaped here, so the signals below cannot reach a
    // process that reused its pid. Its exit is waited for on a pidfd (every supervisor's
    // start waits for it), or in 1 ms naps where there is none.
    let exited = crate::runtime::spawn::pidfd_open(child.id()).ok();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(Instant::now());
                match &exited {
                    Some(fd) => wait_readable(fd, left),
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            Ok(None) => {
                kill_group(child);
                return Err(ProbeError::Timeout(timeout));
            }
            Err(e) => return Err(ProbeError::Start(e)),
        }
    };
    // Its children may hold the pipes open: wait a little for the answer, not for them.
    let mut answers = readers.into_iter().map(|rx| {
        rx.recv_timeout(Duration::from_millis(500))
            .unwrap_or_default()
    });
    let stdout = answers.next().unwrap_or_default();
    let stderr = answers.next().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("neuralflow-swarm agent "));
    let Some(line) = line else {
        let stderr = String::from_utf8_lossy(&stderr);
        return Err(ProbeError::NotAnAgent {
            status,
            stderr: stderr.trim().chars().take(300).collect(),
        });
    };
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
    };
    let expected = crate::shm::segment::VERSION;
    let found = field("layout");
    if found != expected.to_string() {
        return Err(ProbeError::Layout {
            found: found.to_string(),
            expected,
        });
    }
    let kinds = field("kinds")
        .split(',')
        .filter_map(|k| k.parse().ok())
        .collect();
    // A measure asked for and not reported as on did not hold, whatever the reason.
    let said = stdout
        .lines()
        .find_map(|l| l.strip_prefix(SANDBOX_LINE))
        .map(SandboxReport::from_line);
    let measures = crate::runtime::sandbox::Measure::ALL
        .into_iter()
        .map(|m| {
            let state = if !sandbox.measures.contains(&m) {
                MeasureState::Off
            } else {
                match &said {
                    None => MeasureState::Unavailable(
                        "the agent executable did not report its sandbox".into(),
                    ),
                    Some(r) => match r.state(m) {
                        MeasureState::Off => MeasureState::Unavailable("not applied".into()),
                        s => s.clone(),
                    },
                }
            };
            (m, state)
        })
        .collect();
    Ok((kinds, SandboxReport { measures }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An executable script in a scratch folder of its own.
    fn script(name: &str, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("swarm-probe-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("agent");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn a_probe_that_never_answers_times_out_and_one_that_exits_is_not_an_agent() {
        let policy = SandboxPolicy::default();
        let hang = script("hang", "exec sleep 30");
        let t = Instant::now();
        let got = start(&hang, Duration::from_millis(300), &policy).and_then(Probe::finish);
        assert!(matches!(got, Err(ProbeError::Timeout(_))), "{got:?}");
        // Given up at its deadline (and killed), not after the sleep.
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

        let quits = script("quits", "echo not me >&2; exit 3");
        let got = start(&quits, Duration::from_secs(10), &policy).and_then(Probe::finish);
        match got {
            Err(ProbeError::NotAnAgent { status, stderr }) => {
                assert_eq!(status.code(), Some(3));
                assert!(stderr.contains("not me"), "{stderr}");
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(hang.parent().unwrap());
        let _ = std::fs::remove_dir_all(quits.parent().unwrap());
    }
}
