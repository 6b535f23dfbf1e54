//! Starting processes that inherit the segment's descriptor.
//!
//! Descriptors are created close-on-exec (so that unrelated children never get them); this
//! module clears the flag, between fork and exec, only on the descriptors a given child must
//! inherit.

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd`'s child inherit `fds` (same numbers) across exec.
pub fn inherit_fds(cmd: &mut Command, fds: &[RawFd]) {
    let fds = fds.to_vec();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called: it calls `fcntl` only, allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Restricts `cmd`'s child to one CPU (for benchmarks that want two sides on two cores).
pub fn pin_child_to_cpu(cmd: &mut Command, cpu: usize) {
    // SAFETY: runs between fork and exec; `sched_setaffinity` is a plain system call and the
    // CPU set is built on the stack.
    unsafe {
        cmd.pre_exec(move || {
            let mut set = nix::sched::CpuSet::new();
            if set.set(cpu).is_ok() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            }
            Ok(())
        });
    }
}

/// Restricts the calling thread to one CPU; returns the previous mask to restore.
pub fn pin_current_thread(cpu: usize) -> Option<nix::sched::CpuSet> {
    let me = nix::unistd::Pid::from_raw(0);
    let old = nix::sched::sched_getaffinity(me).ok()?;
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).ok()?;
    nix::sched::sched_setaffinity(me, &set).ok()?;
    Some(old)
}

/// Restores a mask saved by [`pin_current_thread`].
pub fn restore_affinity(old: Option<nix::sched::CpuSet>) {
    if let Some(old) = old {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &old);
    }
}

/// CPUs this process may run on.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The `agent-bin` executable: `$SWARM_AGENT_BIN` if set, else the one installed beside the
/// running executable (for `swarm`, and for test binaries one directory further down).
pub fn default_agent_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("SWARM_AGENT_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    for d in [
        Some(dir.clone()),
        dir.parent().map(std::path::Path::to_path_buf),
    ]
    .into_iter()
    .flatten()
    {
        let candidate = d.join("agent-bin");
        if candidate.is_file() {
            return candidate;
        }
    }
    dir.join("agent-bin")
}

/// A descriptor that becomes readable when process `pid` (a child of ours, not yet
/// reaped, so that the pid cannot have been reused) exits.
pub(crate) fn pidfd_open(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor, ours alone.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}
