//! The agent loop: pop tasks, run each through the registry, reply through page buffers.

use super::liveness::{start_beater, watch_parent};
use super::{AgentConfig, AgentError, Registry, TaskContext};
use crate::runtime::task::{flags, kinds, status, TaskError};
use crate::shm::descriptor::Descriptor;
use crate::shm::heartbeat::{AgentState, HeartbeatWord};
use crate::shm::ring::{Producer, RingCorrupt, RingStorage, Wait};
use crate::shm::segment::{Direction, Segment, SegmentSlab};
use crate::shm::slab::{Owner, PageHandle, Slab, SlabError};
use crate::sync::Ordering;
use std::borrow::Cow;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Runs the agent loop until told to stop. Returns `Ok` on a requested stop.
pub fn run(config: &AgentConfig, registry: &Registry) -> Result<(), AgentError> {
    let slot = config.slot;
    let thread_err = |source| AgentError::Thread { slot, source };
    if let Some(fd) = config.parent_fd {
        watch_parent(fd).map_err(thread_err)?;
    }
    // SAFETY: the supervisor passed these descriptors for the segment's files; nothing else
    // in this process owns them.
    let seg = unsafe { Segment::open_agent_raw(slot, config.fds) }
        .map_err(|source| AgentError::Segment { slot, source })?;
    let seg_err = |source| AgentError::Segment { slot, source };
    let hb = seg.heartbeat(slot).map_err(seg_err)?;
    hb.begin(config.epoch, std::process::id());
    start_beater(seg.clone(), slot, config.heartbeat_period).map_err(thread_err)?;
    install_panic_hook();
    let mut rx = seg.consumer(slot, Direction::ToAgent).map_err(seg_err)?;
    let tx = seg.producer(slot, Direction::FromAgent).map_err(seg_err)?;
    // The agent is the only one to allocate from its pool.
    let slab = seg.slab(0).lowest_first();
    let me = Owner::Agent(slot);
    let doorbell = seg.doorbell();
    let bus = super::Bus::new(&seg, &slab, me, hb, config, doorbell, tx).map_err(|e| {
        AgentError::Segment {
            slot,
            source: crate::shm::segment::SegmentError::BadConfig(e.to_string()),
        }
    })?;
    let ring_err = |source| AgentError::Ring { slot, source };
    // Last, before the first task: give up everything a document could abuse.
    crate::runtime::sandbox::apply(&config.sandbox)
        .map_err(|source| AgentError::Sandbox { slot, source })?;
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
            continue;
        }
        inbox.clear();
        rx.pop_batch(&mut inbox, 64).map_err(ring_err)?;
        let mut last_flush = Instant::now();
        for (i, task) in inbox.iter().enumerate() {
            // What the supervisor said on the bus since: cancels, shutdown.
            bus.read_control();
            // Relaxed: as above.
            let stopping =
                seg.control().shutdown.load(Ordering::Relaxed) != 0 || bus.shutting_down();
            if task.kind == kinds::STOP.get() || stopping {
                flush(&mut bus.tx.borrow_mut(), &mut outbox, doorbell, config).map_err(ring_err)?;
                hb.set_state(AgentState::Exiting);
                return Ok(());
            }
            if bus.is_cancelled(task.task_id) {
                // Cancelled while it waited here: its (discarded) end says so, unrun.
                let mut done = Descriptor::new(task.task_id, task.attempt, status::FAILED);
                done.buffer = PageHandle::NIL_RAW;
                outbox.push(done);
                continue;
            }
            // What is done is published before the next task starts (the doorbell waits
            // for the rules below): should this task kill the agent, the supervisor then
            // holds every earlier result, and the oldest task still out is this one, so
            // the blame cannot fall on a task that finished.
            if !outbox.is_empty() {
                publish(&mut bus.tx.borrow_mut(), &mut outbox, doorbell, config)
                    .map_err(ring_err)?;
            }
            hb.set_state(AgentState::Busy);
            hb.set_current(Some((task.task_id, task.attempt)));
            bus.current.set((task.task_id, task.attempt));
            let done = match run_one(task, registry, &slab, me, hb, config, doorbell, &bus) {
                Ok(done) => done,
                Err(source) => {
                    // The runtime's own failure, not the task's: no blame for it.
                    hb.set_current(None);
                    return Err(AgentError::Slab { slot, source });
                }
            };
            hb.set_current(None);
            hb.task_done();
            outbox.push(done);
            // One wake-up for a run of short tasks: flush (publish and ring) at once after
            // a long one, or at the end of the batch; otherwise the next task's start
            // publishes this one without ringing.
            let last = i + 1 == inbox.len();
            if last || last_flush.elapsed() > Duration::from_micros(20) {
                flush(&mut bus.tx.borrow_mut(), &mut outbox, doorbell, config).map_err(ring_err)?;
                last_flush = Instant::now();
            }
        }
        // A batch that ended on a skipped task still has its end to give.
        if !outbox.is_empty() {
            flush(&mut bus.tx.borrow_mut(), &mut outbox, doorbell, config).map_err(ring_err)?;
        }
        hb.set_state(AgentState::Idle);
    }
}

/// Publishes the outbox on the ring and rings the supervisor's doorbell.
fn flush<S: RingStorage<Descriptor>>(
    tx: &mut Producer<Descriptor, S>,
    outbox: &mut Vec<Descriptor>,
    doorbell: crate::shm::futex::WaitPair<'_>,
    config: &AgentConfig,
) -> Result<(), RingCorrupt> {
    publish(tx, outbox, doorbell, config)?;
    doorbell.wake();
    Ok(())
}

/// Publishes the outbox on the ring (ringing the doorbell only while the ring is full).
fn publish<S: RingStorage<Descriptor>>(
    tx: &mut Producer<Descriptor, S>,
    outbox: &mut Vec<Descriptor>,
    doorbell: crate::shm::futex::WaitPair<'_>,
    config: &AgentConfig,
) -> Result<(), RingCorrupt> {
    let wait = Wait::SpinThenSleep(config.spin);
    tx.push_all(outbox, wait, Some(config.heartbeat_period), || {
        doorbell.wake()
    })?;
    outbox.clear();
    Ok(())
}

thread_local! {
    /// Where the last panic on this thread happened, set by the panic hook.
    static PANICKED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Whether this thread is inside a handler (its panics become task failures).
    static IN_HANDLER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Records the location of panics in handlers (which become the task's failure, so they
/// are not printed); panics elsewhere go to the previous hook. Installed once per process.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_HANDLER.with(|h| h.get()) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                PANICKED_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs the handler, turning a panic into the text of the task's failure.
fn call(
    handler: &super::registry::Handler,
    ctx: &TaskContext<'_>,
) -> Result<Result<Vec<u8>, TaskError>, String> {
    PANICKED_AT.with(|p| p.borrow_mut().take());
    IN_HANDLER.with(|h| h.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(ctx)));
    IN_HANDLER.with(|h| h.set(false));
    r.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        match PANICKED_AT.with(|p| p.borrow_mut().take()) {
            Some(at) => format!("{msg} (at {at})"),
            None => msg,
        }
    })
}

/// Reads the list of a several-input task: `(first buffer, length)` pairs, or inline
/// inputs ([`flags::INLINE_INPUT`]) whose bytes follow their pair, padded to 8 bytes.
fn read_input_list<'s>(
    list: &'s [u8],
    read: &dyn Fn(u64, u64) -> Result<Cow<'s, [u8]>, SlabError>,
) -> Result<Vec<Cow<'s, [u8]>>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let word = |at: usize| -> Result<u64, String> {
        list.get(at..at + 8)
            .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| format!("input list cut short at byte {at}"))
    };
    while at < list.len() {
        let (raw, len) = (word(at)?, word(at + 8)?);
        at += 16;
        if raw == flags::INLINE_INPUT {
            let len = usize::try_from(len).map_err(|_| "inline input too long".to_string())?;
            let bytes = at
                .checked_add(len)
                .and_then(|end| list.get(at..end))
                .ok_or_else(|| format!("inline input of {len} bytes cut short"))?;
            out.push(Cow::Borrowed(bytes));
            at += len.next_multiple_of(8);
        } else {
            out.push(read(raw, len).map_err(|e| e.to_string())?);
        }
    }
    Ok(out)
}

/// Runs one task and builds its completion. Earlier completions are published before a
/// task starts, so while its output waits for room in our pool the `doorbell` is rung for
/// the supervisor to take them (and free their buffers).
#[allow(clippy::too_many_arguments)]
fn run_one(
    task: &Descriptor,
    registry: &Registry,
    slab: &Slab<SegmentSlab>,
    me: Owner,
    hb: &HeartbeatWord,
    config: &AgentConfig,
    doorbell: crate::shm::futex::WaitPair<'_>,
    bus: &super::Bus<'_>,
) -> Result<Descriptor, SlabError> {
    let mut done = Descriptor::new(task.task_id, task.attempt, status::OK);
    let start = Instant::now();
    // The input is lent: it stays the supervisor's, we only read it. A payload that fits
    // one buffer is read in place; a chain is gathered into one slice.
    let read = |raw: u64, len: u64| -> Result<Cow<'_, [u8]>, SlabError> {
        let parts = slab.segments(raw, len, Owner::Supervisor)?;
        Ok(match parts[..] {
            [one] => Cow::Borrowed(one),
            _ => Cow::Owned(parts.concat()),
        })
    };
    let list_bytes;
    let mut list = Vec::new();
    let input: Result<Cow<'_, [u8]>, String> = match task.payload() {
        None => Ok(Cow::Borrowed(&[][..])),
        Some(raw) if task.flags & flags::INPUT_LIST != 0 => match read(raw, task.len) {
            Ok(l) => {
                list_bytes = l;
                read_input_list(&list_bytes, &read).map(|l| {
                    list = l;
                    Cow::Borrowed(&[][..])
                })
            }
            Err(e) => Err(e.to_string()),
        },
        Some(raw) => read(raw, task.len).map_err(|e| e.to_string()),
    };
    let (code, out) = match (input, registry.get(task.kind)) {
        (Err(e), _) => (status::FAILED, TaskError::new("bad_input", e).encode()),
        (Ok(_), None) => {
            done.arg2 = task.kind;
            (status::UNKNOWN_KIND, Vec::new())
        }
        (Ok(input), Some(handler)) => {
            let one;
            let inputs: &[Cow<'_, [u8]>] = if task.flags & flags::ONE_INPUT != 0 {
                one = [Cow::Borrowed(&*input)];
                &one
            } else {
                &list
            };
            let ctx = TaskContext {
                hb,
                input: &input,
                inputs,
                arg: task.arg,
                heartbeat_period: config.heartbeat_period,
                split: Default::default(),
                bus,
            };
            match call(handler, &ctx) {
                Ok(Ok(out)) => match ctx.split.take() {
                    Some(split) => (status::SPLIT, split.encode()),
                    None => (status::OK, out),
                },
                Ok(Err(e)) => (status::FAILED, e.encode()),
                Err(panic) => (status::PANICKED, panic.into_bytes()),
            }
        }
    };
    let out = Output {
        code,
        bytes: &out,
        start,
    };
    reply(slab, me, hb, config, doorbell, done, out)
}

/// A finished task's result, to be written into page buffers.
struct Output<'a> {
    code: u32,
    bytes: &'a [u8],
    start: Instant,
}

fn reply(
    slab: &Slab<SegmentSlab>,
    me: Owner,
    hb: &HeartbeatWord,
    config: &AgentConfig,
    doorbell: crate::shm::futex::WaitPair<'_>,
    mut done: Descriptor,
    out: Output<'_>,
) -> Result<Descriptor, SlabError> {
    let too_large;
    let mut bytes = out.bytes;
    let mut code = out.code;
    let limit = u64::from(slab.capacity(me)) * slab.buffer_size() as u64;
    if bytes.len() as u64 > limit {
        too_large = TaskError::new(
            "too_large",
            format!(
                "output of {} bytes exceeds the {limit} bytes of the agent's page-buffer pool \
                 (see SupervisorBuilder::agent_buffers)",
                bytes.len()
            ),
        )
        .encode();
        bytes = &too_large;
        code = status::FAILED;
    }
    done.kind = code;
    done.arg = out.start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
    if bytes.is_empty() {
        done.buffer = PageHandle::NIL_RAW;
        done.len = 0;
        return Ok(done);
    }
    let h = super::bus::write_own(slab, me, hb, config, doorbell, bytes)?;
    done.buffer = h.to_raw();
    done.len = bytes.len() as u64;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(raw: u64, len: u64) -> Vec<u8> {
        [raw.to_ne_bytes(), len.to_ne_bytes()].concat()
    }

    #[test]
    fn input_lists_mix_chains_and_inline_bytes_and_refuse_short_ones() {
        let mut list = entry(7, 3);
        list.extend(entry(flags::INLINE_INPUT, 5));
        list.extend(b"hello\0\0\0");
        list.extend(entry(flags::INLINE_INPUT, 0));
        let read = |raw: u64, len: u64| -> Result<Cow<'_, [u8]>, SlabError> {
            Ok(Cow::Owned(vec![raw as u8; len as usize]))
        };
        let got = read_input_list(&list, &read).unwrap();
        assert_eq!(got, [&[7u8, 7, 7][..], b"hello", b""]);
        // Cut anywhere: never a panic; inside a pair or an input's bytes, an error.
        for cut in 0..list.len() {
            let _ = read_input_list(&list[..cut], &read);
        }
        for cut in [8, 20, 24, 33, 36, 48] {
            assert!(
                read_input_list(&list[..cut], &read).is_err(),
                "cut at {cut}"
            );
        }
        let mut huge = entry(flags::INLINE_INPUT, u64::MAX);
        huge.extend([0; 8]);
        assert!(read_input_list(&huge, &read).is_err());
    }
}
