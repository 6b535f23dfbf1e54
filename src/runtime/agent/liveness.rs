//! The agent's two watch threads: one proves this process alive to the supervisor, the
//! other ends this process when the supervisor goes away.

use crate::shm::segment::Segment;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

/// Starts the thread that beats `slot`'s heartbeat every half period for as long as the
/// process runs, whatever its handlers do. A process that is stopped (`SIGSTOP`), frozen
/// or dead stops beating with it; a handler that computes for minutes does not. A handler
/// that never returns is caught by the task's run-time limit instead (a `timeout`).
pub(super) fn start_beater(seg: Arc<Segment>, slot: u32, period: Duration) -> std::io::Result<()> {
    let step = (period / 2).max(Duration::from_millis(1));
    std::thread::Builder::new()
        .name("agent-beat".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let Ok(hb) = seg.heartbeat(slot) else {
                return;
            };
            loop {
                hb.beat();
                std::thread::sleep(step);
            }
        })
        .map(drop)
}

/// Starts the thread that ends this process when the supervisor goes away: it blocks on a
/// pipe whose write end only the supervisor holds, and end-of-file means the supervisor
/// is gone, however it died.
pub(super) fn watch_parent(fd: RawFd) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut b = [0u8; 1];
            loop {
                // SAFETY: `fd` is the inherited read end of the liveness pipe, owned by this
                // thread for the life of the process; `b` is a valid 1-byte buffer.
                let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                // End of file (or any error): the supervisor is gone. Leave now, without
                // running destructors that might touch the shared segment.
                // SAFETY: `_exit` is always safe to call; it ends the process.
                unsafe { libc::_exit(0) };
            }
        })
        .map(drop)
}
