//! A bounded single-producer/single-consumer ring of plain descriptors, placed on the heap
//! (for loom and in-process use) or in a shared segment (between a supervisor and an agent).
//!
//! The algorithm is Lamport's SPSC queue with the refinements of rtrb and iceoryx2:
//!
//! - `head` (next slot to read, written only by the consumer) and `tail` (next slot to write,
//!   written only by the producer) are free-running `u64` counters on separate cache lines;
//!   a slot's index is `counter & (capacity - 1)`.
//! - Each side caches the other side's counter and rereads it only when the cached value
//!   says the ring is full (producer) or empty (consumer).
//! - Batches publish several descriptors with one Release store of the counter.
//! - A side that finds nothing to do spins briefly, then sleeps on a futex ([`WaitPair`]); the
//!   other side issues the wake-up system call only when the flag says someone sleeps.
//!
//! The other side of a ring may live in another process that crashed, hangs or misbehaves,
//! so its counter is never trusted: a counter that would put more than `capacity` items in
//! the ring, or move backwards, is reported as [`RingCorrupt`] instead of being used.
//! Descriptors are [`Plain`], valid for any bit pattern; their fields are checked by whoever
//! interprets them.
//!
//! ```
//! use neuralflow_swarm::ring::{heap_ring, PushError};
//!
//! let (mut tx, mut rx) = heap_ring::<u64>(4);
//! tx.push(1).unwrap();
//! assert_eq!(tx.push_batch(&[2, 3, 4, 5]).unwrap(), 3); // only 3 fit
//! assert!(matches!(tx.push(6), Err(PushError::Full(6))));
//! let mut out = Vec::new();
//! rx.pop_batch(&mut out, 16).unwrap();
//! assert_eq!(out, [1, 2, 3, 4]);
//! ```

use crate::shm::futex::{SleepFlag, WaitPair, WakeWord};
use crate::shm::plain::{Plain, SharedLine};
use crate::shm::sync::{AtomicU64, Ordering, UnsafeCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The words of a ring that one side writes and the other only reads: its counter, the
/// futex word it bumps to wake the other side, and its own sleep flag. Zeroed memory is a
/// valid side of an empty ring.
///
/// The producer's side holds `tail` (next slot to write) and the word that wakes the
/// consumer; the consumer's side holds `head` (next slot to read) and the word that wakes
/// the producer. So each side can live in memory only its writer may write.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingSide {
    /// `tail` on the producer's side, `head` on the consumer's.
    index: SharedLine<AtomicU64>,
    /// The word this side bumps to wake the other, and the flag it sets while it sleeps.
    wait: SharedLine<SideWait>,
}

/// A side's wait words (see [`RingSide`]).
#[repr(C)]
#[derive(Debug, Default)]
struct SideWait {
    wakes: WakeWord,
    sleeping: SleepFlag,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RingSide>() == 256);

/// Both sides of a ring together: a ring on the heap, or one whose two sides share memory.
/// Zeroed memory is a valid empty ring.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingHeader {
    /// The producer's words.
    pub producer: RingSide,
    /// The consumer's words.
    pub consumer: RingSide,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RingHeader>() == 512);

impl RingHeader {
    /// Both sides, as [`RingStorage::sides`] gives them.
    pub fn sides(&self) -> RingSides<'_> {
        RingSides {
            producer: &self.producer,
            consumer: &self.consumer,
        }
    }
}

/// Both sides of a ring, wherever each lives.
#[derive(Debug, Clone, Copy)]
pub struct RingSides<'a> {
    /// The producer's words (`tail`).
    pub producer: &'a RingSide,
    /// The consumer's words (`head`).
    pub consumer: &'a RingSide,
}

impl<'a> RingSides<'a> {
    /// Resets an idle ring to empty, for a new incarnation of its agent.
    ///
    /// Call only when no producer or consumer is using the ring (the agent at the other end
    /// is dead and this process holds neither endpoint), from a process that may write
    /// both sides.
    pub fn reset(self) {
        // Relaxed: nobody else touches the ring now; the new agent is started after this,
        // and process creation orders these stores before anything it does.
        self.consumer.index.store(0, Ordering::Relaxed);
        self.producer.index.store(0, Ordering::Relaxed);
    }

    /// Overwrites both counters, as a misbehaving peer could. For tests of the readers.
    #[doc(hidden)]
    pub fn scribble_for_tests(self, head: u64, tail: u64) {
        // Relaxed: simulating a peer that does not follow the protocol.
        self.consumer.index.store(head, Ordering::Relaxed);
        self.producer.index.store(tail, Ordering::Relaxed);
    }

    /// Number of descriptors in the ring, as far as both counters can be trusted.
    pub fn len(self) -> Result<usize, RingCorrupt> {
        // Relaxed: a monitoring snapshot; no data is read on the strength of it.
        let head = self.consumer.index.load(Ordering::Relaxed);
        let tail = self.producer.index.load(Ordering::Relaxed);
        let len = tail.wrapping_sub(head);
        if len > u32::MAX as u64 {
            return Err(RingCorrupt { head, tail });
        }
        Ok(len as usize)
    }

    /// Wakes the consumer if it sleeps, without publishing anything (so that it notices a
    /// request made elsewhere, such as a shutdown). Needs write access to the producer's
    /// side.
    pub fn wake_consumer(self) {
        self.not_empty().wake();
    }

    /// Whether the ring is empty.
    pub fn is_empty(self) -> Result<bool, RingCorrupt> {
        self.len().map(|n| n == 0)
    }

    /// The consumer sleeps while the ring is empty; the producer wakes it.
    fn not_empty(self) -> WaitPair<'a> {
        WaitPair {
            word: &self.producer.wait.wakes,
            flag: &self.consumer.wait.sleeping,
        }
    }

    /// The producer sleeps while the ring is full; the consumer wakes it.
    fn not_full(self) -> WaitPair<'a> {
        WaitPair {
            word: &self.consumer.wait.wakes,
            flag: &self.producer.wait.sleeping,
        }
    }

    fn head(self) -> &'a AtomicU64 {
        &self.consumer.index
    }

    fn tail(self) -> &'a AtomicU64 {
        &self.producer.index
    }
}

/// Where a ring's sides and slots live.
///
/// # Safety
///
/// `slots()` must return the same slice on every call, of a power-of-two length, whose
/// memory stays valid as long as the storage value lives; `sides()` likewise. An endpoint
/// writes only its own side (and, for the producer, the slots): memory of the other side
/// may be mapped read-only.
pub unsafe trait RingStorage<T> {
    /// The two sides' words.
    fn sides(&self) -> RingSides<'_>;
    /// The slots; the length is the capacity.
    fn slots(&self) -> &[UnsafeCell<T>];
}

/// A ring on the heap, shared by its two endpoints through an `Arc`.
#[derive(Debug)]
pub struct HeapRing<T> {
    header: RingHeader,
    slots: Box<[UnsafeCell<T>]>,
}

// SAFETY: the slots are accessed only through `Producer`/`Consumer`, whose protocol gives
// each slot to one side at a time; `T: Send` values move between threads.
unsafe impl<T: Send> Sync for HeapRing<T> {}

// SAFETY: the header and the boxed slice live as long as the `Arc`, and the slice length is
// fixed at construction to a power of two.
unsafe impl<T> RingStorage<T> for Arc<HeapRing<T>> {
    fn sides(&self) -> RingSides<'_> {
        self.header.sides()
    }
    fn slots(&self) -> &[UnsafeCell<T>] {
        &self.slots
    }
}

/// The producing end of a heap ring.
pub type HeapProducer<T> = Producer<T, Arc<HeapRing<T>>>;
/// The consuming end of a heap ring.
pub type HeapConsumer<T> = Consumer<T, Arc<HeapRing<T>>>;

/// Creates a heap ring holding `capacity` descriptors (rounded up to a power of two).
pub fn heap_ring<T: Plain>(capacity: usize) -> (HeapProducer<T>, HeapConsumer<T>) {
    let capacity = capacity.max(1).next_power_of_two();
    let ring = Arc::new(HeapRing {
        header: RingHeader::default(),
        slots: (0..capacity)
            .map(|_| UnsafeCell::new(T::zeroed()))
            .collect(),
    });
    let producer = Producer::attach(ring.clone()).expect("fresh ring is consistent");
    let consumer = Consumer::attach(ring).expect("fresh ring is consistent");
    (producer, consumer)
}

/// The other side's counter made no sense: the ring was corrupted or its peer misbehaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ring counters are inconsistent (head {head}, tail {tail})")]
pub struct RingCorrupt {
    /// The consumer's counter as read.
    pub head: u64,
    /// The producer's counter as read.
    pub tail: u64,
}

/// Why a push failed; the value comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError<T> {
    /// The ring is full: the backpressure signal.
    #[error("ring is full")]
    Full(T),
    /// The consumer's counter is inconsistent.
    #[error(transparent)]
    Corrupt(RingCorrupt),
}

/// Why a pop failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    /// Nothing to pop.
    #[error("ring is empty")]
    Empty,
    /// The producer's counter is inconsistent.
    #[error(transparent)]
    Corrupt(RingCorrupt),
}

/// How a side waits for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Poll without ever sleeping (lowest latency, burns a core).
    Spin,
    /// Poll this many times, then sleep on the futex until woken.
    SpinThenSleep(u32),
}

impl Wait {
    /// A default balanced for task dispatch: about a few microseconds of polling.
    pub const DEFAULT: Wait = Wait::SpinThenSleep(2_000);
}

/// Shared waiting loop of both endpoints: `ready` is re-checked after each spin and after the
/// sleep announcement. Returns `Ok(false)` on timeout.
fn wait_until(
    word: WaitPair<'_>,
    wait: Wait,
    timeout: Option<Duration>,
    mut ready: impl FnMut() -> Result<bool, RingCorrupt>,
) -> Result<bool, RingCorrupt> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let spins = match wait {
        Wait::Spin => u32::MAX,
        Wait::SpinThenSleep(n) => n,
    };
    let mut i = 0u32;
    loop {
        if ready()? {
            return Ok(true);
        }
        if i < spins {
            i += 1;
            crate::shm::sync::spin_loop();
            // Check the clock only now and then while spinning.
            if i % 1024 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            continue;
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(false),
            },
            None => None,
        };
        let token = word.prepare();
        let now_ready = ready();
        if !matches!(now_ready, Ok(false)) {
            word.finish();
            return now_ready;
        }
        word.sleep(token, left);
        word.finish();
    }
}

/// The writing end of a ring.
#[derive(Debug)]
pub struct Producer<T, S: RingStorage<T>> {
    storage: S,
    /// Our own counter: the authoritative copy; the shared one is only published.
    tail: u64,
    /// Last value of the consumer's counter we read.
    cached_head: u64,
    mask: u64,
    _marker: std::marker::PhantomData<fn(T)>,
}

impl<T: Plain, S: RingStorage<T>> Producer<T, S> {
    /// Attaches to a ring, taking its counters as they are.
    pub fn attach(storage: S) -> Result<Self, RingCorrupt> {
        let sides = storage.sides();
        // Relaxed: attaching happens before any concurrent use of this end; see `reset`.
        let tail = sides.tail().load(Ordering::Relaxed);
        // Acquire: SYNC POINT (slots released): pairs with the consumer's Release of `head`.
        let head = sides.head().load(Ordering::Acquire);
        let mask = storage.slots().len() as u64 - 1;
        if tail.wrapping_sub(head) > mask + 1 {
            return Err(RingCorrupt { head, tail });
        }
        Ok(Self {
            storage,
            tail,
            cached_head: head,
            mask,
            _marker: std::marker::PhantomData,
        })
    }

    /// The ring's capacity.
    pub fn capacity(&self) -> usize {
        self.mask as usize + 1
    }

    /// Free slots, rereading the consumer's counter.
    fn refresh_free(&mut self) -> Result<usize, RingCorrupt> {
        // Acquire: SYNC POINT (slots released): the consumer has finished reading every slot
        // before `head`; pairs with the consumer's Release store of `head`.
        let head = self.storage.sides().head().load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > self.mask + 1 {
            return Err(RingCorrupt {
                head,
                tail: self.tail,
            });
        }
        self.cached_head = head;
        Ok((self.mask + 1 - used) as usize)
    }

    #[inline]
    fn free_slots(&mut self, wanted: usize) -> Result<usize, RingCorrupt> {
        let free = (self.mask + 1 - self.tail.wrapping_sub(self.cached_head)) as usize;
        // NB: the cached head is what makes the fast path touch no shared line but our own
        // (rtrb's `cached_head`); `swarm bench ring` measures the effect.
        if free >= wanted {
            return Ok(free);
        }
        self.refresh_free()
    }

    #[inline]
    fn write_slot(&self, index: u64, value: T) {
        let slot = &self.storage.slots()[(index & self.mask) as usize];
        // SAFETY: slots from `tail` up to `head + capacity` belong to the producer until it
        // publishes them; the consumer does not read past the published tail.
        slot.with_mut(|p| unsafe { p.write(value) });
    }

    #[inline]
    fn publish(&mut self, new_tail: u64) {
        self.tail = new_tail;
        // Release: SYNC POINT (slots written): every slot before `tail` is visible to the
        // consumer that Acquires `tail`.
        let sides = self.storage.sides();
        sides.tail().store(new_tail, Ordering::Release);
        sides.not_empty().wake();
    }

    /// Pushes one descriptor, or gives it back when the ring is full.
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        match self.free_slots(1) {
            Ok(0) => Err(PushError::Full(value)),
            Ok(_) => {
                self.write_slot(self.tail, value);
                self.publish(self.tail.wrapping_add(1));
                Ok(())
            }
            Err(e) => Err(PushError::Corrupt(e)),
        }
    }

    /// Pushes as many of `values` as fit, publishing them with one store. Returns how many.
    #[inline]
    pub fn push_batch(&mut self, values: &[T]) -> Result<usize, RingCorrupt> {
        if values.is_empty() {
            return Ok(0);
        }
        let n = self.free_slots(values.len())?.min(values.len());
        if n == 0 {
            return Ok(0);
        }
        for (i, v) in values[..n].iter().enumerate() {
            self.write_slot(self.tail.wrapping_add(i as u64), *v);
        }
        self.publish(self.tail.wrapping_add(n as u64));
        Ok(n)
    }

    /// Pushes all of `values`, in batches as room allows. While the ring is full it calls
    /// `on_full` (to wake the consumer, say) and waits for space, at most `timeout` at a
    /// time before trying again.
    pub fn push_all(
        &mut self,
        values: &[T],
        wait: Wait,
        timeout: Option<Duration>,
        mut on_full: impl FnMut(),
    ) -> Result<(), RingCorrupt> {
        let mut sent = 0;
        while sent < values.len() {
            let n = self.push_batch(&values[sent..])?;
            sent += n;
            if n == 0 {
                on_full();
                self.wait_for_space(wait, timeout)?;
            }
        }
        Ok(())
    }

    /// Waits until at least one slot is free. `Ok(false)` on timeout.
    pub fn wait_for_space(
        &mut self,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<bool, RingCorrupt> {
        if self.free_slots(1)? > 0 {
            return Ok(true);
        }
        let storage = &self.storage;
        let tail = self.tail;
        let cap = self.mask + 1;
        let mut head_seen = self.cached_head;
        let ok = wait_until(storage.sides().not_full(), wait, timeout, || {
            // Acquire: SYNC POINT (slots released), as in `refresh_free`.
            let head = storage.sides().head().load(Ordering::Acquire);
            let used = tail.wrapping_sub(head);
            if used > cap {
                return Err(RingCorrupt { head, tail });
            }
            head_seen = head;
            Ok(used < cap)
        })?;
        self.cached_head = head_seen;
        Ok(ok)
    }

    /// Pushes, waiting for space. Gives the value back on timeout.
    pub fn push_wait(
        &mut self,
        value: T,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<(), PushError<T>> {
        match self.wait_for_space(wait, timeout) {
            Ok(true) => self.push(value),
            Ok(false) => Err(PushError::Full(value)),
            Err(e) => Err(PushError::Corrupt(e)),
        }
    }

    /// The storage this endpoint writes to.
    pub fn storage(&self) -> &S {
        &self.storage
    }
}

/// The reading end of a ring.
#[derive(Debug)]
pub struct Consumer<T, S: RingStorage<T>> {
    storage: S,
    /// Our own counter: the authoritative copy.
    head: u64,
    /// Last value of the producer's counter we read.
    cached_tail: u64,
    mask: u64,
    _marker: std::marker::PhantomData<fn() -> T>,
}

impl<T: Plain, S: RingStorage<T>> Consumer<T, S> {
    /// Attaches to a ring, taking its counters as they are.
    pub fn attach(storage: S) -> Result<Self, RingCorrupt> {
        let sides = storage.sides();
        // Relaxed: attaching happens before any concurrent use of this end; see `reset`.
        let head = sides.head().load(Ordering::Relaxed);
        // Acquire: SYNC POINT (slots written): pairs with the producer's Release of `tail`.
        let tail = sides.tail().load(Ordering::Acquire);
        let mask = storage.slots().len() as u64 - 1;
        if tail.wrapping_sub(head) > mask + 1 {
            return Err(RingCorrupt { head, tail });
        }
        Ok(Self {
            storage,
            head,
            cached_tail: tail,
            mask,
            _marker: std::marker::PhantomData,
        })
    }

    /// The ring's capacity.
    pub fn capacity(&self) -> usize {
        self.mask as usize + 1
    }

    fn refresh_available(&mut self) -> Result<usize, RingCorrupt> {
        // Acquire: SYNC POINT (slots written): every slot before `tail` was written before
        // the producer's Release store of `tail`.
        let tail = self.storage.sides().tail().load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if avail > self.mask + 1 {
            return Err(RingCorrupt {
                head: self.head,
                tail,
            });
        }
        self.cached_tail = tail;
        Ok(avail as usize)
    }

    #[inline]
    fn available(&mut self) -> Result<usize, RingCorrupt> {
        let avail = self.cached_tail.wrapping_sub(self.head) as usize;
        // NB: cached tail, as for the producer's cached head.
        if avail > 0 {
            return Ok(avail);
        }
        self.refresh_available()
    }

    #[inline]
    fn read_slot(&self, index: u64) -> T {
        let slot = &self.storage.slots()[(index & self.mask) as usize];
        // SAFETY: slots from `head` up to the published tail were written before the tail was
        // published (Acquire above) and the producer does not reuse them until we publish a
        // new head. `T: Plain`, so whatever bytes are there form a valid value.
        slot.with(|p| unsafe { p.read() })
    }

    #[inline]
    fn release(&mut self, new_head: u64) {
        self.head = new_head;
        // Release: SYNC POINT (slots released): our reads of every slot before `head` are
        // done; pairs with the producer's Acquire of `head`.
        let sides = self.storage.sides();
        sides.head().store(new_head, Ordering::Release);
        sides.not_full().wake();
    }

    /// Pops one descriptor.
    #[inline]
    pub fn pop(&mut self) -> Result<T, PopError> {
        match self.available() {
            Ok(0) => Err(PopError::Empty),
            Ok(_) => {
                let v = self.read_slot(self.head);
                self.release(self.head.wrapping_add(1));
                Ok(v)
            }
            Err(e) => Err(PopError::Corrupt(e)),
        }
    }

    /// Pops up to `max` descriptors into `out`, releasing them with one store. Returns how
    /// many.
    #[inline]
    pub fn pop_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<usize, RingCorrupt> {
        let n = self.available()?.min(max);
        if n == 0 {
            return Ok(0);
        }
        out.reserve(n);
        for i in 0..n {
            out.push(self.read_slot(self.head.wrapping_add(i as u64)));
        }
        self.release(self.head.wrapping_add(n as u64));
        Ok(n)
    }

    /// Waits until at least one descriptor is available. `Ok(false)` on timeout.
    pub fn wait_for_data(
        &mut self,
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<bool, RingCorrupt> {
        if self.available()? > 0 {
            return Ok(true);
        }
        let storage = &self.storage;
        let head = self.head;
        let cap = self.mask + 1;
        let mut tail_seen = self.cached_tail;
        let ok = wait_until(storage.sides().not_empty(), wait, timeout, || {
            // Acquire: SYNC POINT (slots written), as in `refresh_available`.
            let tail = storage.sides().tail().load(Ordering::Acquire);
            let avail = tail.wrapping_sub(head);
            if avail > cap {
                return Err(RingCorrupt { head, tail });
            }
            tail_seen = tail;
            Ok(avail > 0)
        })?;
        self.cached_tail = tail_seen;
        Ok(ok)
    }

    /// Pops one descriptor, waiting for it. `Err(PopError::Empty)` on timeout.
    pub fn pop_wait(&mut self, wait: Wait, timeout: Option<Duration>) -> Result<T, PopError> {
        match self.wait_for_data(wait, timeout) {
            Ok(true) => self.pop(),
            Ok(false) => Err(PopError::Empty),
            Err(e) => Err(PopError::Corrupt(e)),
        }
    }

    /// The storage this endpoint reads from.
    pub fn storage(&self) -> &S {
        &self.storage
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_and_full() {
        let (mut tx, mut rx) = heap_ring::<u64>(8);
        for i in 0..8 {
            tx.push(i).unwrap();
        }
        assert_eq!(tx.push(99), Err(PushError::Full(99)));
        for i in 0..8 {
            assert_eq!(rx.pop(), Ok(i));
        }
        assert_eq!(rx.pop(), Err(PopError::Empty));
    }

    #[test]
    fn batches_wrap_around() {
        let (mut tx, mut rx) = heap_ring::<u64>(8);
        let mut next = 0u64;
        let mut expect = 0u64;
        let mut out = Vec::new();
        for round in 0..1000u64 {
            let batch: Vec<u64> = (next..next + (round % 7) + 1).collect();
            let n = tx.push_batch(&batch).unwrap();
            next += n as u64;
            out.clear();
            rx.pop_batch(&mut out, (round % 5) as usize + 1).unwrap();
            for v in &out {
                assert_eq!(*v, expect);
                expect += 1;
            }
        }
        out.clear();
        rx.pop_batch(&mut out, 64).unwrap();
        for v in &out {
            assert_eq!(*v, expect);
            expect += 1;
        }
        assert_eq!(expect, next);
    }

    #[test]
    fn corrupt_tail_is_reported_not_used() {
        let (_tx, mut rx) = heap_ring::<u64>(8);
        rx.storage().sides().tail().store(1_000, Ordering::Relaxed);
        assert!(matches!(rx.pop(), Err(PopError::Corrupt(_))));
        let mut out = Vec::new();
        assert!(rx.pop_batch(&mut out, 4).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn corrupt_head_is_reported_not_used() {
        let (mut tx, _rx) = heap_ring::<u64>(8);
        for i in 0..8 {
            tx.push(i).unwrap();
        }
        // A head ahead of the tail would make the ring look like it has 2^64 - 8 free slots.
        tx.storage().sides().head().store(100, Ordering::Relaxed);
        assert!(matches!(tx.push(1), Err(PushError::Corrupt(_))));
    }

    #[test]
    fn sleeping_consumer_is_woken() {
        let (mut tx, mut rx) = heap_ring::<u64>(4);
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 10_000 {
                let v = rx
                    .pop_wait(Wait::SpinThenSleep(0), Some(Duration::from_secs(10)))
                    .expect("woken within the watchdog");
                got.push(v);
            }
            got
        });
        for i in 0..10_000u64 {
            tx.push_wait(i, Wait::SpinThenSleep(0), Some(Duration::from_secs(10)))
                .unwrap();
        }
        let got = t.join().unwrap();
        assert!(got.iter().copied().eq(0..10_000));
    }

    #[test]
    fn wait_times_out() {
        let (_tx, mut rx) = heap_ring::<u64>(4);
        let start = Instant::now();
        assert_eq!(
            rx.pop_wait(Wait::DEFAULT, Some(Duration::from_millis(20))),
            Err(PopError::Empty)
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
