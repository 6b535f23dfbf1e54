//! Resource limits of a sandboxed agent.

use nix::sys::resource::{setrlimit, Resource};
use std::os::fd::AsFd;

/// Descriptors an agent may have open: its inherited ones and a document or two.
pub(super) const MAX_FILES: u64 = 64;

/// What an agent may still append to a regular file it inherited as stdout or stderr
/// (a log the user redirected them to).
pub(super) const MAX_LOG_GROWTH: u64 = 64 << 20;

/// No core files (a crash would write document data to disk); no file written past
/// [`MAX_LOG_GROWTH`] beyond the end of the inherited stdout and stderr (no file at all
/// when they are not regular files: an agent writes to shared memory, and Landlock lets
/// it open nothing for writing); `SIGXFSZ` ignored, so a write past the limit fails with
/// `EFBIG` instead of killing the agent; at most [`MAX_FILES`] descriptors. Soft and hard
/// limits both, so none can be raised again.
pub(super) fn apply() -> Result<(), String> {
    let set = |r: Resource, v: u64, name: &str| {
        setrlimit(r, v, v).map_err(|e| format!("setrlimit({name}): {e}"))
    };
    set(Resource::RLIMIT_CORE, 0, "RLIMIT_CORE")?;
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::SIGXFSZ,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .map_err(|e| format!("ignore SIGXFSZ: {e}"))?;
    let log_end = [std::io::stdout().as_fd(), std::io::stderr().as_fd()]
        .into_iter()
        .filter_map(|fd| nix::sys::stat::fstat(fd).ok())
        .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
        .map(|st| st.st_size.max(0) as u64 + MAX_LOG_GROWTH)
        .max()
        .unwrap_or(0);
    set(Resource::RLIMIT_FSIZE, log_end, "RLIMIT_FSIZE")?;
    set(Resource::RLIMIT_NOFILE, MAX_FILES, "RLIMIT_NOFILE")
}
