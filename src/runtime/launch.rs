//! Starting an agent without copying the supervisor: `clone(CLONE_VM | CLONE_VFORK)`, a few
//! system calls in the child, `execve`.
//!
//! `fork` copies the parent's page tables and makes every private page copy-on-write, in
//! the parent too: in a supervisor with a large heap (an embedder's program, a Python
//! process) each agent start then costs milliseconds, and the parent pays page faults
//! afterwards. The C library's `posix_spawn` avoids that by running the child in the
//! parent's memory until `execve`, but it cannot join a cgroup (v1 has no clone flag for it)
//! or keep chosen descriptors across exec. This does what `posix_spawn` does, with those two
//! steps added, and nothing else:
//!
//! 1. the parent blocks every signal on the calling thread (a handler must not run in the
//!    child while it shares the parent's memory);
//! 2. the child, on a stack of its own, sets every caught signal back to its default,
//!    clears close-on-exec on the descriptors it keeps, points stdin and stdout at
//!    `/dev/null`, writes `0` into each `cgroup.procs` it joins, unblocks all signals and
//!    execs; on any failure it leaves the error number where the parent reads it and exits;
//! 3. the parent, resumed when the child has exec'd or exited, restores its mask and
//!    reports the error, if any.
//!
//! Everything the child touches is prepared by the parent beforehand (C strings, the
//! argument and environment arrays); the child allocates nothing and calls only
//! async-signal-safe functions.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

/// Bytes of the child's stack: the few calls above need little.
const STACK: usize = 64 * 1024;

/// What to start.
#[derive(Debug)]
pub struct Launch {
    program: CString,
    argv: Vec<CString>,
    /// Descriptors kept, at the same numbers.
    keep: Vec<RawFd>,
    /// `cgroup.procs` files the child joins before exec.
    cgroups: Vec<CString>,
}

impl Launch {
    /// `program` with `args` (after `argv[0]`, which is the program).
    pub fn new(program: &OsStr, args: &[String]) -> io::Result<Launch> {
        let c = |s: &[u8]| {
            CString::new(s)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
        };
        let program = c(program.as_bytes())?;
        let mut argv = vec![program.clone()];
        for a in args {
            argv.push(c(a.as_bytes())?);
        }
        Ok(Launch {
            program,
            argv,
            keep: Vec::new(),
            cgroups: Vec::new(),
        })
    }

    /// Keeps `fds` (same numbers) across exec.
    pub fn keep_fds(&mut self, fds: &[RawFd]) {
        self.keep.extend_from_slice(fds);
    }

    /// Joins the cgroups whose `cgroup.procs` files these are, before exec.
    pub fn join_cgroups(&mut self, procs_files: Vec<CString>) {
        self.cgroups = procs_files;
    }

    /// Starts it. Returns once the child has exec'd (or failed to, with its error).
    pub fn spawn(&self) -> io::Result<Launched> {
        let devnull = c"/dev/null";
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let env: Vec<CString> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let cgroups: Vec<*const libc::c_char> = self.cgroups.iter().map(|c| c.as_ptr()).collect();
        let error = AtomicI32::new(0);
        let child = Child {
            program: self.program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            keep: &self.keep,
            cgroups: &cgroups,
            devnull: devnull.as_ptr(),
            error: &error,
        };
        let mut stack = vec![0u8; STACK];
        // The stack grows down: its top, 16-byte aligned.
        let top = (stack.as_mut_ptr() as usize + STACK) & !15;
        let mut all: libc::sigset_t = empty_sigset();
        let mut old: libc::sigset_t = empty_sigset();
        // SAFETY: `all` and `old` are valid sigset_t values owned by this frame.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY:
        // - `run_child` runs on `stack`, which outlives the call: with CLONE_VFORK this
        //   thread is suspended until the child has exec'd or exited, so nothing here is
        //   freed or moved meanwhile;
        // - `child` and everything it points to live in this frame for the same reason;
        // - the child calls only async-signal-safe functions and allocates nothing; all
        //   signals are blocked until it has reset their handlers.
        let pid = unsafe {
            libc::clone(
                run_child,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                &child as *const Child<'_> as *mut libc::c_void,
            )
        };
        let clone_error = io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        drop(stack);
        if pid < 0 {
            return Err(clone_error);
        }
        let mut launched = Launched { pid };
        // Acquire: SYNC POINT (child's error): the child's store happened before it exec'd
        // or exited, which is before this thread resumed; pairs with the Release in
        // `run_child`.
        match error.load(Ordering::Acquire) {
            0 => Ok(launched),
            errno => {
                let _ = launched.wait();
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }
}

fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain C bit set; all zeros is the empty set.
    unsafe { std::mem::zeroed() }
}

/// What the child needs, prepared by the parent.
struct Child<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    keep: &'a [RawFd],
    cgroups: &'a [*const libc::c_char],
    devnull: *const libc::c_char,
    error: &'a AtomicI32,
}

/// The child, between clone and exec. Only async-signal-safe calls; no allocation, no
/// panics (no indexing, no unwrap).
extern "C" fn run_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Child` the parent passed, alive while the parent is suspended.
    let c = unsafe { &*(arg as *const Child<'_>) };
    let fail = |errno: i32| -> libc::c_int {
        // Release: SYNC POINT (child's error): pairs with the parent's Acquire in `spawn`.
        c.error.store(errno.max(1), Ordering::Release);
        // SAFETY: ends the child at once, without running anything of the parent's.
        unsafe { libc::_exit(127) }
    };
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    // SAFETY: plain system calls on integers and on the C strings and arrays the parent
    // prepared, which stay valid while it is suspended; `sigaction` values are zeroed
    // plain C structs filled in by the kernel or set to SIG_DFL.
    unsafe {
        // Caught signals back to their defaults (ignored ones stay ignored, as exec keeps
        // them, but SIGPIPE, which the Rust runtime ignores, goes back to its default).
        let mut act: libc::sigaction = std::mem::zeroed();
        for sig in 1..libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::sigaction(sig, std::ptr::null(), &mut act) != 0 {
                continue;
            }
            if act.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        for &fd in c.keep {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return fail(errno());
            }
        }
        let null = libc::open(c.devnull, libc::O_RDWR);
        if null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(null, 1) < 0 {
            return fail(errno());
        }
        if null > 2 {
            libc::close(null);
        }
        for &file in c.cgroups {
            // O_CREAT changes nothing on cgroupfs (the file exists) and lets a directory
            // laid out like cgroupfs stand in for it in tests.
            let fd = libc::open(
                file,
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                return fail(errno());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let e = errno();
            libc::close(fd);
            if n != 1 {
                return fail(e);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(c.program, c.argv, c.envp);
        fail(errno())
    }
}

/// A started process, reaped by [`Launched::wait`].
#[derive(Debug)]
pub struct Launched {
    pid: libc::pid_t,
}

impl Launched {
    /// Its pid.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for it to exit and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out-pointer; the pid is our unreaped child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                return Ok(ExitStatus::from_raw(status));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child keeps the descriptors asked for and no other, runs with the arguments and
    /// environment given, and its exit status comes back; a program that does not exist is
    /// an error from `spawn`, not a child.
    #[test]
    fn launches_keep_what_they_are_given() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (other, _keep_open) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        use std::os::fd::AsRawFd;
        let script = format!(
            "echo kept >&{w} && ! (true >&{o}) 2>/dev/null && test \"$1\" = two && exit 7",
            w = w.as_raw_fd(),
            o = other.as_raw_fd()
        );
        let mut l = Launch::new(
            OsStr::new("/bin/sh"),
            &["-c".into(), script, "one".into(), "two".into()],
        )
        .unwrap();
        l.keep_fds(&[w.as_raw_fd()]);
        let mut child = l.spawn().unwrap();
        drop(w);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(7), "{status:?}");
        let mut out = String::new();
        use std::io::Read;
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        assert_eq!(out, "kept\n");
        let missing = Launch::new(OsStr::new("/no/such/program"), &[]).unwrap();
        let e = missing.spawn().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }

    /// Joining a cgroup writes `0` into its `cgroup.procs`; one that cannot be written is
    /// an error, and no child is left.
    #[test]
    fn the_child_joins_its_cgroups_before_exec() {
        let dir = std::env::temp_dir().join(format!("swarm-launch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let procs = dir.join("cgroup.procs");
        let mut l = Launch::new(OsStr::new("/bin/true"), &[]).unwrap();
        l.join_cgroups(vec![CString::new(procs.as_os_str().as_bytes()).unwrap()]);
        assert!(l.spawn().unwrap().wait().unwrap().success());
        assert_eq!(std::fs::read_to_string(&procs).unwrap(), "0");
        let mut bad = Launch::new(OsStr::new("/bin/true"), &[]).unwrap();
        bad.join_cgroups(vec![c"/proc/no-such-dir/cgroup.procs".to_owned()]);
        assert!(bad.spawn().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
