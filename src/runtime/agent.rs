//! The agent runtime: what runs inside `agent-bin` (or a user's own agent binary).
//!
//! An agent opens the inherited segment, announces itself on its heartbeat line, then loops:
//! pop tasks from its to-agent ring, run each through the [`Registry`], put the output in a
//! page-buffer chain of its own, push the completion, ring the supervisor's doorbell.
//! While idle it beats once per heartbeat period; while a task runs, the task's handler beats
//! through [`TaskContext::beat`], so a handler that stops making progress looks hung to the
//! supervisor, which is the point.
//!
//! A watcher thread blocks on a pipe whose write end only the supervisor holds; when the
//! supervisor dies, however it dies, the read returns end-of-file and the agent exits at
//! once. (`PR_SET_PDEATHSIG` would fire when the *thread* that forked the agent exits, not
//! the process, which is wrong for a supervisor that respawns from any thread.)
//!
//! ```no_run
//! use neuralflow_swarm::agent::{AgentConfig, Registry};
//!
//! let mut registry = Registry::with_synthetic();
//! registry.register(1000, "upper", |ctx| Ok(ctx.input().to_ascii_uppercase()));
//! let config = AgentConfig::from_args(std::env::args().skip(1))?;
//! neuralflow_swarm::agent::run(&config, &registry)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::runtime::task::{flags, kinds, status, ECHO_XOR};
use crate::shm::descriptor::Descriptor;
use crate::shm::heartbeat::{AgentState, HeartbeatWord};
use crate::shm::ring::Wait;
use crate::shm::segment::{Direction, Segment};
use crate::shm::slab::{Owner, PageHandle, SlabError};
use crate::shm::sync::Ordering;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// What a task handler sees.
pub struct TaskContext<'a> {
    hb: &'a HeartbeatWord,
    input: &'a [u8],
    inputs: &'a [std::borrow::Cow<'a, [u8]>],
    arg: u64,
    heartbeat_period: Duration,
}

impl TaskContext<'_> {
    /// Proves progress to the supervisor. Handlers that run longer than a heartbeat period
    /// call this now and then (it is a single store).
    #[inline]
    pub fn beat(&self) {
        self.hb.beat();
    }

    /// The task's input payload (empty for a task with several inputs).
    pub fn input(&self) -> &[u8] {
        self.input
    }

    /// The inputs of a task given several ([`crate::runtime::task::TaskSpec::inputs`]), in the order
    /// they were submitted; empty otherwise.
    pub fn inputs(&self) -> &[std::borrow::Cow<'_, [u8]>] {
        self.inputs
    }

    /// The task's argument.
    pub fn arg(&self) -> u64 {
        self.arg
    }

    /// How often a long handler should beat, at least.
    pub fn heartbeat_period(&self) -> Duration {
        self.heartbeat_period
    }

    /// Sleeps for `d`, beating along the way.
    pub fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        let step = self.heartbeat_period / 2;
        loop {
            self.beat();
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep((end - now).min(step));
        }
    }
}

/// A task handler: input in, output bytes or an error message out.
pub type Handler = Box<dyn Fn(&TaskContext<'_>) -> Result<Vec<u8>, String> + Send + Sync>;

/// The task kinds an agent can run.
#[derive(Default)]
pub struct Registry {
    handlers: HashMap<u32, (&'static str, Handler)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.handlers.iter().map(|(k, (n, _))| (*k, *n)).collect();
        names.sort_unstable();
        f.debug_struct("Registry").field("kinds", &names).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The synthetic kinds used by tests and benchmarks: `noop`, `spin`, `sleep`, `echo`,
    /// `alloc`, `concat`, `crash`, `hang`.
    pub fn with_synthetic() -> Self {
        let mut r = Self::new();
        r.register(kinds::NOOP, "noop", |_| Ok(Vec::new()));
        r.register(kinds::SPIN, "spin", |ctx| {
            let end = Instant::now() + Duration::from_nanos(ctx.arg());
            let mut i = 0u32;
            while Instant::now() < end {
                std::hint::spin_loop();
                i = i.wrapping_add(1);
                if i % 1024 == 0 {
                    ctx.beat();
                }
            }
            Ok(Vec::new())
        });
        r.register(kinds::SLEEP, "sleep", |ctx| {
            ctx.sleep(Duration::from_nanos(ctx.arg()));
            Ok(Vec::new())
        });
        r.register(kinds::ECHO, "echo", |ctx| {
            Ok(ctx.input().iter().map(|b| b ^ ECHO_XOR).collect())
        });
        r.register(kinds::ALLOC, "alloc", |ctx| {
            let size = ctx.arg() as usize;
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(size)
                .map_err(|e| format!("cannot reserve {size} bytes: {e}"))?;
            // Touch every page so the memory is really charged to the agent's cgroup.
            let page = 4096;
            let mut touched = 0;
            while touched < size {
                let n = page.min(size - touched);
                v.extend(std::iter::repeat_n(1u8, n));
                touched += n;
                if touched % (16 << 20) == 0 {
                    ctx.beat();
                }
            }
            std::hint::black_box(&v);
            Ok(Vec::new())
        });
        r.register(kinds::CONCAT, "concat", |ctx| Ok(ctx.inputs().concat()));
        r.register(kinds::CRASH, "crash", |_| std::process::abort());
        r.register(kinds::HANG, "hang", |_| loop {
            std::thread::sleep(Duration::from_secs(3600));
        });
        r
    }

    /// Adds (or replaces) the handler of `kind`.
    pub fn register(
        &mut self,
        kind: u32,
        name: &'static str,
        handler: impl Fn(&TaskContext<'_>) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    ) {
        self.handlers.insert(kind, (name, Box::new(handler)));
    }

    /// The handler of `kind`.
    pub fn get(&self, kind: u32) -> Option<&Handler> {
        self.handlers.get(&kind).map(|(_, h)| h)
    }
}

/// How the supervisor started this agent (its command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Inherited segment descriptor.
    pub segment_fd: RawFd,
    /// Slot in the segment.
    pub slot: u32,
    /// This incarnation's epoch.
    pub epoch: u32,
    /// Read end of the supervisor-liveness pipe, if any.
    pub parent_fd: Option<RawFd>,
    /// Idle beat period.
    pub heartbeat_period: Duration,
    /// Spins before sleeping on an empty ring.
    pub spin: u32,
}

impl AgentConfig {
    /// The command-line arguments that produce this configuration.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "--segment-fd".into(),
            self.segment_fd.to_string(),
            "--slot".into(),
            self.slot.to_string(),
            "--epoch".into(),
            self.epoch.to_string(),
            "--heartbeat-us".into(),
            self.heartbeat_period.as_micros().to_string(),
            "--spin".into(),
            self.spin.to_string(),
        ];
        if let Some(fd) = self.parent_fd {
            a.push("--parent-fd".into());
            a.push(fd.to_string());
        }
        a
    }

    /// Parses what [`AgentConfig::to_args`] wrote.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut c = AgentConfig {
            segment_fd: -1,
            slot: 0,
            epoch: 1,
            parent_fd: None,
            heartbeat_period: Duration::from_millis(100),
            spin: 2000,
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let mut val = || it.next().ok_or(format!("{flag} needs a value"));
            let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--segment-fd" => c.segment_fd = num(val()?)? as RawFd,
                "--slot" => c.slot = num(val()?)? as u32,
                "--epoch" => c.epoch = num(val()?)? as u32,
                "--parent-fd" => c.parent_fd = Some(num(val()?)? as RawFd),
                "--heartbeat-us" => {
                    c.heartbeat_period = Duration::from_micros(num(val()?)?.max(1000))
                }
                "--spin" => c.spin = num(val()?)? as u32,
                _ => return Err(format!("unknown argument {flag:?}")),
            }
        }
        if c.segment_fd < 0 {
            return Err("--segment-fd is required".into());
        }
        Ok(c)
    }
}

/// Why an agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The segment did not validate.
    #[error("slot {slot}: {source}")]
    Segment {
        /// This agent's slot.
        slot: u32,
        /// What was wrong.
        #[source]
        source: crate::shm::segment::SegmentError,
    },
    /// A ring's counters were inconsistent.
    #[error("slot {slot}: {source}")]
    Ring {
        /// This agent's slot.
        slot: u32,
        /// What was wrong.
        #[source]
        source: crate::shm::ring::RingCorrupt,
    },
    /// The slab failed in a way retrying cannot fix.
    #[error("slot {slot}: {source}")]
    Slab {
        /// This agent's slot.
        slot: u32,
        /// What was wrong.
        #[source]
        source: SlabError,
    },
}

/// Starts the thread that ends this process when the supervisor goes away.
fn watch_parent(fd: RawFd) {
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
        .expect("spawn parent watcher");
}

/// Runs the agent loop until told to stop. Returns `Ok` on a requested stop.
pub fn run(config: &AgentConfig, registry: &Registry) -> Result<(), AgentError> {
    let slot = config.slot;
    if let Some(fd) = config.parent_fd {
        watch_parent(fd);
    }
    // SAFETY: the supervisor passed this descriptor for the segment; nothing else in this
    // process owns it.
    let seg = unsafe { Segment::open_raw(config.segment_fd) }
        .map_err(|source| AgentError::Segment { slot, source })?;
    let seg_err = |source| AgentError::Segment { slot, source };
    let hb = seg.heartbeat(slot).map_err(seg_err)?;
    hb.begin(config.epoch, std::process::id());
    let mut rx = seg.consumer(slot, Direction::ToAgent).map_err(seg_err)?;
    let mut tx = seg.producer(slot, Direction::FromAgent).map_err(seg_err)?;
    let slab = seg.slab(slot.wrapping_mul(0x9E37_79B9));
    let me = Owner::Agent(slot);
    let doorbell = &seg.control().doorbell;
    let ring_err = |source| AgentError::Ring { slot, source };
    hb.set_state(AgentState::Idle);
    hb.beat();
    // Tell the supervisor at once that this incarnation is ready for work.
    doorbell.wake();

    let wait = Wait::SpinThenSleep(config.spin);
    let mut inbox: Vec<Descriptor> = Vec::with_capacity(64);
    let mut outbox: Vec<Descriptor> = Vec::with_capacity(64);
    loop {
        // Relaxed: a request to stop; nothing else is read on the strength of it.
        if seg.control().shutdown.load(Ordering::Relaxed) != 0 {
            hb.set_state(AgentState::Exiting);
            return Ok(());
        }
        if !rx
            .wait_for_data(wait, Some(config.heartbeat_period))
            .map_err(ring_err)?
        {
            hb.beat();
            continue;
        }
        inbox.clear();
        rx.pop_batch(&mut inbox, 64).map_err(ring_err)?;
        let mut last_flush = Instant::now();
        for (i, task) in inbox.iter().enumerate() {
            // Relaxed: as above.
            let stopping = seg.control().shutdown.load(Ordering::Relaxed) != 0;
            if task.kind == kinds::STOP || stopping {
                flush(&mut tx, &mut outbox, doorbell, hb, config).map_err(ring_err)?;
                hb.set_state(AgentState::Exiting);
                return Ok(());
            }
            hb.set_state(AgentState::Busy);
            hb.set_current(Some((task.task_id, task.attempt)));
            hb.beat();
            let mut on_full = || flush(&mut tx, &mut outbox, doorbell, hb, config);
            let done = run_one(task, registry, &slab, me, hb, config, &mut on_full).map_err(
                |e| match e {
                    ReplyError::Slab(source) => AgentError::Slab { slot, source },
                    ReplyError::Ring(source) => AgentError::Ring { slot, source },
                },
            )?;
            hb.set_current(None);
            hb.task_done();
            outbox.push(done);
            // Batch completions of short tasks; publish at once after a long one, or at
            // the end of the batch.
            let last = i + 1 == inbox.len();
            if last || last_flush.elapsed() > Duration::from_micros(20) {
                flush(&mut tx, &mut outbox, doorbell, hb, config).map_err(ring_err)?;
                last_flush = Instant::now();
            }
        }
        hb.set_state(AgentState::Idle);
        hb.beat();
    }
}

fn flush<S: crate::shm::ring::RingStorage<Descriptor>>(
    tx: &mut crate::shm::ring::Producer<Descriptor, S>,
    outbox: &mut Vec<Descriptor>,
    doorbell: &crate::shm::futex::WaitWord,
    hb: &HeartbeatWord,
    config: &AgentConfig,
) -> Result<(), crate::shm::ring::RingCorrupt> {
    let mut sent = 0;
    while sent < outbox.len() {
        let n = tx.push_batch(&outbox[sent..])?;
        sent += n;
        if n == 0 {
            doorbell.wake();
            hb.beat();
            tx.wait_for_space(
                Wait::SpinThenSleep(config.spin),
                Some(config.heartbeat_period),
            )?;
        }
    }
    outbox.clear();
    doorbell.wake();
    Ok(())
}

enum ReplyError {
    Slab(SlabError),
    Ring(crate::shm::ring::RingCorrupt),
}

type OnFull<'a> = dyn FnMut() -> Result<(), crate::shm::ring::RingCorrupt> + 'a;

/// Runs one task and builds its completion. `on_full` publishes held completions, so the
/// supervisor can free buffers while we wait for room in the slab.
fn run_one(
    task: &Descriptor,
    registry: &Registry,
    slab: &crate::shm::slab::Slab<crate::shm::segment::SegmentSlab>,
    me: Owner,
    hb: &HeartbeatWord,
    config: &AgentConfig,
    on_full: &mut OnFull<'_>,
) -> Result<Descriptor, ReplyError> {
    let mut done = Descriptor::new(task.task_id, task.attempt, status::OK);
    let start = Instant::now();
    // The input is lent: it stays the supervisor's, we only read it. A payload that fits
    // one buffer is read in place; a chain is gathered into one slice.
    let read = |raw: u64, len: u64| -> Result<std::borrow::Cow<'_, [u8]>, SlabError> {
        let parts = slab.segments(raw, len, Owner::Supervisor)?;
        Ok(match parts[..] {
            [one] => std::borrow::Cow::Borrowed(one),
            _ => std::borrow::Cow::Owned(parts.concat()),
        })
    };
    let mut list = Vec::new();
    let input = match task.payload() {
        None => Ok(std::borrow::Cow::Borrowed(&[][..])),
        Some(raw) if task.flags & flags::INPUT_LIST != 0 => {
            // (first buffer, length) pairs, each a chain the supervisor holds.
            read(raw, task.len).and_then(|l| {
                for pair in l.chunks_exact(16) {
                    let raw = u64::from_ne_bytes(pair[..8].try_into().expect("8 bytes"));
                    let len = u64::from_ne_bytes(pair[8..].try_into().expect("8 bytes"));
                    list.push(read(raw, len)?);
                }
                Ok(std::borrow::Cow::Borrowed(&[][..]))
            })
        }
        Some(raw) => read(raw, task.len),
    };
    let (code, out) = match (input, registry.get(task.kind)) {
        (Err(e), _) => (status::FAILED, e.to_string().into_bytes()),
        (Ok(_), None) => {
            done.arg2 = task.kind;
            (status::UNKNOWN_KIND, Vec::new())
        }
        (Ok(input), Some(handler)) => {
            let ctx = TaskContext {
                hb,
                input: &input,
                inputs: &list,
                arg: task.arg,
                heartbeat_period: config.heartbeat_period,
            };
            match handler(&ctx) {
                Ok(out) => (status::OK, out),
                Err(msg) => (status::FAILED, msg.into_bytes()),
            }
        }
    };
    // Held outputs of tasks that do not drain a pipeline leave the reserve free.
    let keep_free = if task.flags & flags::KEEP_RESERVE != 0 {
        slab.count() as usize / 8
    } else {
        0
    };
    reply(
        slab, me, hb, config, on_full, done, code, &out, keep_free, start,
    )
}

#[allow(clippy::too_many_arguments)]
fn reply(
    slab: &crate::shm::slab::Slab<crate::shm::segment::SegmentSlab>,
    me: Owner,
    hb: &HeartbeatWord,
    config: &AgentConfig,
    on_full: &mut OnFull<'_>,
    mut done: Descriptor,
    mut code: u32,
    bytes: &[u8],
    keep_free: usize,
    start: Instant,
) -> Result<Descriptor, ReplyError> {
    let too_large;
    let mut bytes = bytes;
    if bytes.len() as u64 > slab.count() as u64 * slab.buffer_size() as u64 / 2 {
        too_large = format!(
            "output of {} bytes exceeds what the page-buffer slab can carry",
            bytes.len()
        );
        bytes = too_large.as_bytes();
        code = status::FAILED;
    }
    done.kind = code;
    done.arg = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
    if bytes.is_empty() {
        done.buffer = PageHandle::NIL_RAW;
        done.len = 0;
        return Ok(done);
    }
    let needed = bytes.len().div_ceil(slab.buffer_size());
    let h = loop {
        // A scan of the ledger (about a microsecond per thousand buffers). Another process
        // may allocate between the scan and the write: the reserve is a policy that keeps
        // room for draining tasks, not a guarantee to the buffer.
        if keep_free == 0 || slab.free_count() >= needed + keep_free {
            match slab.write_payload(me, bytes) {
                Ok(h) => break h,
                Err(SlabError::Exhausted { .. }) => {}
                Err(e) => return Err(ReplyError::Slab(e)),
            }
        }
        // The supervisor frees buffers as it takes completions: wait for room, beating.
        on_full().map_err(ReplyError::Ring)?;
        hb.beat();
        std::thread::sleep(config.heartbeat_period / 50);
    };
    done.buffer = h.to_raw();
    done.len = bytes.len() as u64;
    Ok(done)
}

/// Convenience for agent binaries: parse the arguments, run, map the result to an exit code.
pub fn main_with(registry: Registry) -> std::process::ExitCode {
    let config = match AgentConfig::from_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&config, &registry) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
