//! The system-call filter of a sandboxed agent.
//!
//! An allow-list: what a running agent needs to read its documents, compute, allocate,
//! wait, start threads of its own and talk to the supervisor through shared memory. Any
//! other call kills the whole process at once (`SIGSYS`, reported as the death cause
//! `sandbox`). Among what is refused: every socket (so no network, whatever namespace),
//! `fork` and `vfork` (a `clone` without `CLONE_THREAD`), `execve`, `ptrace`,
//! `process_vm_writev`, `kill` of any process but itself, `mount`, `bpf`, `io_uring`,
//! `dup` (an agent has no use for more descriptors), `chmod`, `unlink` and every other
//! call that changes files.
//!
//! `clone3` answers `ENOSYS` instead (its flags are behind a pointer the filter cannot
//! read), and the C library then falls back to `clone`, whose flags it can.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// System calls allowed whatever their arguments.
const ALWAYS: &[i64] = &[
    // Files: documents are opened by path (Landlock decides which) and read.
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_getcwd,
    libc::SYS_readlinkat,
    // Memory.
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    // Waiting and time: futexes (the rings' doorbells, locks), sleeps, clocks.
    libc::SYS_futex,
    libc::SYS_ppoll,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_restart_syscall,
    // Threads and signals of its own.
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_getrandom,
    libc::SYS_getrlimit,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // A thread that calls `std::process::exit` while another thread is already exiting
    // waits in `pause` for the first to end the process (Rust's guard against glibc's
    // racing exits); refused, it turned an agent's clean exit into a death by the filter.
    #[cfg(target_arch = "x86_64")]
    libc::SYS_pause,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_arch_prctl,
];

/// Builds the filters for this process (its pid is in them), in the order they are
/// installed: the one that makes `clone3` answer `ENOSYS`, then the allow-list (last, as
/// installing a filter takes calls the allow-list refuses).
pub fn filters() -> Result<Vec<BpfProgram>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let err = |e: seccompiler::BackendError| e.to_string();
    let cond = |arg, op, value| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(err)
    };
    let rule = |conds: Vec<SeccompCondition>| SeccompRule::new(conds).map_err(err);
    let me = u64::from(std::process::id());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALWAYS.iter().map(|&nr| (nr, Vec::new())).collect();
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::MaskedEq(thread),
            thread,
        )?])?],
    );
    // clone3 is let through here, and answered by the second filter.
    rules.insert(libc::SYS_clone3, Vec::new());
    // Signals to itself only (a handler may stop its own process, or abort).
    rules.insert(
        libc::SYS_kill,
        vec![rule(vec![cond(0, SeccompCmpOp::Eq, me)?])?],
    );
    rules.insert(
        libc::SYS_tgkill,
        vec![rule(vec![cond(0, SeccompCmpOp::Eq, me)?])?],
    );
    // Limits may be read, not set.
    rules.insert(
        libc::SYS_prlimit64,
        vec![rule(vec![cond(2, SeccompCmpOp::Eq, 0)?])?],
    );
    // Naming its threads and memory areas (the C library and the standard library do).
    const PR_SET_VMA: u64 = 0x5356_4d41;
    rules.insert(
        libc::SYS_prctl,
        [
            libc::PR_SET_NAME as u64,
            libc::PR_GET_NAME as u64,
            PR_SET_VMA,
        ]
        .into_iter()
        .map(|op| rule(vec![cond(0, SeccompCmpOp::Eq, op)?]))
        .collect::<Result<_, _>>()?,
    );
    let allow = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(err)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(err)?;
    [clone3, allow]
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(|e| e.to_string()))
        .collect()
}

/// Installs the filters on every thread of this process.
pub(super) fn install() -> Result<(), String> {
    for f in filters()? {
        seccompiler::apply_filter_all_threads(&f).map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}
