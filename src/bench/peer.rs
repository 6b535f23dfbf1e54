//! Diagnostic peers: small agent-side loops that exercise the shared-memory core across a
//! real process boundary. `agent-bin --peer MODE` runs one; the cross-process tests and
//! `swarm bench ring` start them.
//!
//! Modes (the `MODE` string):
//! - `ring-echo:spin` / `ring-echo:futex`: pop each descriptor from the slot's to-agent ring
//!   and push it back on the from-agent ring, until a [`KIND_STOP`] descriptor.
//! - `ring-produce:N`: wait for one descriptor (the start signal), then push descriptors with
//!   `task_id` 0..N on the from-agent ring in batches, then exit.
//! - `slab-echo:B`: for each task, check its lent payload (held by the supervisor) against
//!   [`pattern`], write the payload XOR [`ECHO_XOR`] into a new chain of its own, and push
//!   the completion; completions are pushed in groups of `B`, so the peer holds buffers
//!   between pushes, as a batching agent does.
//! - `slab-hold:N`: allocate `N` single-buffer payloads, then hang (beating) until killed.
//! - `fd-echo:R:W`: echo fixed-size messages read from descriptor `R` onto `W` until EOF
//!   (the pipe and socket baselines of the benchmark).

use crate::shm::descriptor::Descriptor;
use crate::shm::heartbeat::AgentState;
use crate::shm::ring::Wait;
use crate::shm::segment::{Direction, Segment};
use crate::shm::slab::Owner;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Descriptor kind that ends an echo loop.
pub const KIND_STOP: u32 = u32::MAX;
/// Descriptor kind of an ordinary message.
pub const KIND_MSG: u32 = 1;
/// Completion flag: the payload did not match the expected pattern.
pub const FLAG_BAD_PAYLOAD: u32 = 1;
/// What `slab-echo` XORs into every byte of its reply.
pub const ECHO_XOR: u8 = 0x5A;
/// Bytes per message in `fd-echo`.
pub const FD_MSG: usize = std::mem::size_of::<Descriptor>();

/// The test payload for a task: a deterministic byte pattern from its id.
pub fn pattern(task_id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (task_id.wrapping_mul(31).wrapping_add(i as u64 * 7) >> 1) as u8)
        .collect()
}

/// A peer mode, parsed from its `MODE` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMode {
    /// Echo descriptors.
    RingEcho(Wait),
    /// Stream N descriptors.
    RingProduce(u64),
    /// Echo payloads through the slab, completions in groups of B.
    SlabEcho(usize),
    /// Hold N buffers and hang.
    SlabHold(u32),
    /// Echo messages between two descriptors.
    FdEcho(RawFd, RawFd),
}

impl std::str::FromStr for PeerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let num = |a: &str| a.parse::<u64>().map_err(|e| format!("{s}: {e}"));
        Ok(match name {
            "ring-echo" => PeerMode::RingEcho(match arg {
                "spin" => Wait::Spin,
                "futex" => Wait::SpinThenSleep(0),
                _ => Wait::DEFAULT,
            }),
            "ring-produce" => PeerMode::RingProduce(num(arg)?),
            "slab-echo" => PeerMode::SlabEcho(num(arg)?.max(1) as usize),
            "slab-hold" => PeerMode::SlabHold(num(arg)? as u32),
            "fd-echo" => {
                let (r, w) = arg
                    .split_once(':')
                    .ok_or(format!("{s}: want fd-echo:R:W"))?;
                PeerMode::FdEcho(num(r)? as RawFd, num(w)? as RawFd)
            }
            _ => return Err(format!("unknown peer mode {s:?}")),
        })
    }
}

/// Errors of a peer loop.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Segment trouble.
    #[error(transparent)]
    Segment(#[from] crate::shm::segment::SegmentError),
    /// Ring trouble.
    #[error(transparent)]
    Ring(#[from] crate::shm::ring::RingCorrupt),
    /// Slab trouble.
    #[error(transparent)]
    Slab(#[from] crate::shm::slab::SlabError),
    /// I/O trouble.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The mode needs a segment and none was given.
    #[error("this peer mode needs --segment-fd")]
    NoSegment,
}

/// Runs a peer loop in this process (the agent side).
pub fn run(
    segment: Option<Arc<Segment>>,
    slot: u32,
    epoch: u32,
    mode: PeerMode,
) -> Result<(), PeerError> {
    if let PeerMode::FdEcho(r, w) = mode {
        return fd_echo(r, w);
    }
    let seg = segment.ok_or(PeerError::NoSegment)?;
    let hb = seg.heartbeat(slot)?;
    hb.begin(epoch, std::process::id());
    let mut rx = seg.consumer(slot, Direction::ToAgent)?;
    let mut tx = seg.producer(slot, Direction::FromAgent)?;
    hb.set_state(AgentState::Idle);
    let long = Some(Duration::from_millis(100));
    match mode {
        PeerMode::RingEcho(wait) => loop {
            if !rx.wait_for_data(wait, long)? {
                hb.beat();
                continue;
            }
            let d = match rx.pop() {
                Ok(d) => d,
                Err(_) => continue,
            };
            while let Err(e) = tx.push(d) {
                if let crate::shm::ring::PushError::Corrupt(c) = e {
                    return Err(c.into());
                }
                tx.wait_for_space(wait, long)?;
            }
            if d.kind == KIND_STOP {
                return Ok(());
            }
        },
        PeerMode::RingProduce(count) => {
            while !rx.wait_for_data(Wait::DEFAULT, long)? {
                hb.beat();
            }
            rx.pop().ok();
            const BATCH: usize = 64;
            let mut batch = [Descriptor::default(); BATCH];
            let mut next = 0u64;
            while next < count {
                let n = (count - next).min(BATCH as u64) as usize;
                for (i, d) in batch[..n].iter_mut().enumerate() {
                    *d = Descriptor::new(next + i as u64, epoch, KIND_MSG);
                }
                let mut sent = 0;
                while sent < n {
                    let k = tx.push_batch(&batch[sent..n])?;
                    sent += k;
                    if k == 0 {
                        hb.beat();
                        tx.wait_for_space(Wait::DEFAULT, long)?;
                    }
                }
                next += n as u64;
            }
            Ok(())
        }
        PeerMode::SlabEcho(group) => {
            let slab = seg.slab(slot.wrapping_mul(0x9E37_79B9));
            let me = Owner::Agent(slot);
            let mut pending: Vec<Descriptor> = Vec::with_capacity(group);
            let mut inbox = Vec::with_capacity(64);
            loop {
                if !rx.wait_for_data(Wait::DEFAULT, long)? {
                    hb.beat();
                    // Flush a partial group when the supervisor goes quiet.
                    push_all(&mut tx, &mut pending, long)?;
                    continue;
                }
                inbox.clear();
                rx.pop_batch(&mut inbox, 64)?;
                for task in &inbox {
                    if task.kind == KIND_STOP {
                        push_all(&mut tx, &mut pending, long)?;
                        let _ = tx.push_wait(*task, Wait::DEFAULT, long);
                        return Ok(());
                    }
                    let mut done = *task;
                    // The payload is lent: still held by the supervisor; read, don't claim.
                    let reply = match slab.read_payload(task.buffer, task.len, Owner::Supervisor) {
                        Ok(bytes) if bytes == pattern(task.task_id, task.len as usize) => {
                            bytes.iter().map(|b| b ^ ECHO_XOR).collect::<Vec<u8>>()
                        }
                        _ => {
                            done.flags |= FLAG_BAD_PAYLOAD;
                            Vec::new()
                        }
                    };
                    let h = loop {
                        match slab.write_payload(me, &reply) {
                            Ok(h) => break h,
                            Err(crate::shm::slab::SlabError::Exhausted { .. }) => {
                                // Give back what we hold so the supervisor can free memory.
                                push_all(&mut tx, &mut pending, long)?;
                                std::thread::sleep(Duration::from_micros(50));
                            }
                            Err(e) => return Err(e.into()),
                        }
                    };
                    done.buffer = h.to_raw();
                    done.len = reply.len() as u64;
                    pending.push(done);
                    hb.task_done();
                    if pending.len() >= group {
                        push_all(&mut tx, &mut pending, long)?;
                    }
                }
                hb.beat();
            }
        }
        PeerMode::SlabHold(n) => {
            let slab = seg.slab(0);
            for i in 0..n {
                slab.write_payload(Owner::Agent(slot), &pattern(i as u64, 16))?;
            }
            // Tell the parent we hold them, then hang until killed.
            tx.push_wait(
                Descriptor::new(n as u64, epoch, KIND_MSG),
                Wait::DEFAULT,
                None,
            )
            .map_err(|_| PeerError::NoSegment)?;
            loop {
                hb.beat();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        PeerMode::FdEcho(..) => unreachable!("handled above"),
    }
}

fn push_all<S: crate::shm::ring::RingStorage<Descriptor>>(
    tx: &mut crate::shm::ring::Producer<Descriptor, S>,
    pending: &mut Vec<Descriptor>,
    long: Option<Duration>,
) -> Result<(), PeerError> {
    tx.push_all(pending, Wait::DEFAULT, long, || {})?;
    pending.clear();
    Ok(())
}

fn fd_echo(r: RawFd, w: RawFd) -> Result<(), PeerError> {
    // SAFETY: the descriptors were inherited for this purpose and nothing else in this
    // process uses them; when they are the same (a socket), one `File` is made.
    let mut rf = unsafe { std::fs::File::from_raw_fd(r) };
    let mut wf = if r == w {
        rf.try_clone()?
    } else {
        // SAFETY: as above, a distinct descriptor.
        unsafe { std::fs::File::from_raw_fd(w) }
    };
    let mut buf = [0u8; FD_MSG];
    loop {
        match rf.read_exact(&mut buf) {
            Ok(()) => wf.write_all(&buf)?,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The usage line of `agent-bin --peer`.
const PEER_USAGE: &str =
    "usage: agent-bin --peer MODE [--segment-fd N --slot-fd N --common-fd N] [--slot S (0)] \
     [--epoch E (1)] [--sandbox]";

/// A diagnostic peer's flags.
#[derive(Debug)]
struct PeerArgs {
    /// Inherited descriptors of the segment's files (`--segment-fd`, `--slot-fd`,
    /// `--common-fd`; all three or none).
    fds: Option<crate::shm::segment::AgentFds>,
    /// This agent's slot in the segment.
    slot: u32,
    /// This incarnation's epoch.
    epoch: u32,
    /// The peer loop to run.
    peer: PeerMode,
    /// Run in the agents' sandbox, every measure required.
    sandbox: bool,
}

impl PeerArgs {
    /// Parses `--flag value` and `--flag=value`; the message names the flag at fault.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<PeerArgs, String> {
        let (mut fds, mut slot, mut epoch, mut peer) = ([None; 3], 0, 1, None);
        let mut sandbox = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, mut inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .take()
                    .or_else(|| args.next())
                    .ok_or(format!("{flag} needs a value"))
            };
            let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
            match flag.as_str() {
                "--segment-fd" => fds[0] = Some(value()?.parse().map_err(|e| bad(&e))?),
                "--slot-fd" => fds[1] = Some(value()?.parse().map_err(|e| bad(&e))?),
                "--common-fd" => fds[2] = Some(value()?.parse().map_err(|e| bad(&e))?),
                "--slot" => slot = value()?.parse().map_err(|e| bad(&e))?,
                "--epoch" => epoch = value()?.parse().map_err(|e| bad(&e))?,
                "--peer" => peer = Some(value()?.parse::<PeerMode>().map_err(|e| bad(&e))?),
                "--sandbox" => sandbox = true,
                _ => return Err(format!("unexpected argument {flag:?}")),
            }
        }
        let peer = peer.ok_or("--peer is required")?;
        let fds = match fds {
            [Some(segment), Some(slot_file), Some(common)] => Some(crate::shm::segment::AgentFds {
                segment,
                slot_file,
                common,
            }),
            [None, None, None] => None,
            _ => return Err("--segment-fd, --slot-fd and --common-fd go together".into()),
        };
        Ok(PeerArgs {
            fds,
            slot,
            epoch,
            peer,
            sandbox,
        })
    }
}

/// `agent-bin --peer ...`: parses the peer's flags (by hand, so that the binary builds
/// with the runtime alone), opens the inherited segment and runs the peer; returns the
/// process's exit status (2 on bad flags, 1 on an error).
pub fn main_with_args(args: impl IntoIterator<Item = String>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let args = match PeerArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("agent-bin: {e}\n{PEER_USAGE}");
            return ExitCode::from(2);
        }
    };
    let segment = match args.fds {
        // SAFETY: the parent passed these descriptors for the segment's files and nothing
        // else in this process owns them.
        Some(fds) => match unsafe { Segment::open_agent_raw(args.slot, fds) } {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("agent-bin: slot {}: {e}", args.slot);
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    if args.sandbox {
        let policy = crate::runtime::sandbox::SandboxPolicy {
            require: true,
            ..Default::default()
        };
        if let Err(e) = crate::runtime::sandbox::apply(&policy) {
            eprintln!("agent-bin: slot {}: {e}", args.slot);
            return ExitCode::from(1);
        }
    }
    match run(segment, args.slot, args.epoch, args.peer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-bin: slot {}: {e}", args.slot);
            ExitCode::from(1)
        }
    }
}
