//! A broadcast ring: one writer, any number of readers, none of which the writer waits for.
//!
//! One topic of the bus is one ring of fixed-size slots that only its writer writes (in a
//! segment, the supervisor: readers map it read-only). Each reader keeps its own cursor in
//! its own memory, so a reader that is slow, stopped or dead holds nothing up: the writer
//! overwrites the oldest slot, and the reader learns, at its next read, that it lagged and
//! by how many messages, and resumes from the oldest message still there (as
//! `tokio::sync::broadcast` reports `Lagged(n)`).
//!
//! Each slot is a seqlock. Message `n` goes into slot `n mod capacity`, whose sequence
//! word reads `2n + 1` while it is written and `2n + 2` once it is; `0` is a slot never
//! written. Data words are relaxed atomics, so a read racing a write is defined, and
//! discarded: a reader loads the sequence word (Acquire), the data, then (after an Acquire
//! fence) the sequence word again, and keeps what it read only if both loads are the
//! value it expected. This is Boehm's seqlock for language memory models ("Can seqlocks
//! get along with programming language memory models?", MSPC 2012).
//!
//! A message of up to [`INLINE_MAX`] bytes travels in its slot; a larger one in page
//! buffers, named in the slot by its first handle, which the writer frees only once it has
//! marked the slot as being overwritten. Those bytes are plain memory, not atomics, so a
//! copy racing their reuse may read anything: the sequence word, checked after the copy
//! as for inline data, is what says to drop it.
//!
//! Nothing a reader reads is trusted: the memory may be scribbled by anything that can
//! map it writable. A sequence word that makes no sense reads as no message yet, or as a
//! lag; a length that does not fit reads as [`BusError::Corrupt`] and the message is
//! skipped; every counter is used with wrapping or saturating arithmetic.
//!
//! ```
//! use neuralflow_swarm::bus::{heap_bus, BusError};
//!
//! let (mut tx, mut readers) = heap_bus(4, 2);
//! let mut slow = readers.pop().unwrap();
//! let mut fast = readers.pop().unwrap();
//! for i in 0..6u8 {
//!     tx.publish(0, &[i]).unwrap();
//!     assert_eq!(fast.try_recv().unwrap().bytes, [i]);
//! }
//! // Six messages into four slots: the slow reader lost the first three (the oldest
//! // slot could be being overwritten, so it resumes one past it).
//! assert_eq!(slow.try_recv().unwrap_err(), BusError::Lagged(3));
//! assert_eq!(slow.try_recv().unwrap().bytes, [3]);
//! ```

use crate::shm::futex::{SleepFlag, WaitPair, WakeWord};
use crate::shm::plain::SharedLine;
use crate::shm::sync::{fence, load_words, store_words, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Data words in a slot.
#[cfg(not(loom))]
const DATA_WORDS: usize = 29;
/// Fewer under loom, whose cost grows with every access it models.
#[cfg(loom)]
const DATA_WORDS: usize = 2;

/// The largest message that travels in its slot; a larger one goes by page buffer.
pub const INLINE_MAX: usize = DATA_WORDS * 8;

/// No page buffer: the message is inline.
const NO_BUFFER: u64 = u64::MAX;

/// One message's slot: 256 bytes, four cache lines.
#[repr(C)]
#[derive(Debug)]
pub struct BusSlot {
    /// `2n + 1` while message `n` is written, `2n + 2` once it is, `0` never written.
    seq: AtomicU64,
    /// The length (low 32 bits) and the publisher (high 32 bits).
    meta: AtomicU64,
    /// The first page buffer of a large message, or [`NO_BUFFER`].
    buffer: AtomicU64,
    /// An inline message's bytes, little-endian words.
    data: [AtomicU64; DATA_WORDS],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BusSlot>() == 256);

impl Default for BusSlot {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            meta: AtomicU64::new(0),
            buffer: AtomicU64::new(NO_BUFFER),
            data: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A topic's header: how many messages it has had, and the word its readers sleep on.
/// Zeroed memory is a valid header of an empty topic.
#[repr(C)]
#[derive(Debug, Default)]
pub struct BusHeader {
    /// Messages published: the next message's number.
    head: SharedLine<AtomicU64>,
    /// Bumped to wake sleeping readers.
    wake: SharedLine<WakeWord>,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BusHeader>() == 256);

/// Where a topic's header, slots and readers' sleep flags live.
///
/// # Safety
///
/// `header()` and `slots()` must return the same memory on every call, `slots()` of a
/// power-of-two length, valid as long as the storage value lives; so must `flag(i)`. A
/// reader writes only its own sleep flag; the header and slots may be mapped read-only to
/// it.
pub unsafe trait BusStorage {
    /// The topic's header.
    fn header(&self) -> &BusHeader;
    /// The slots; the length is the capacity.
    fn slots(&self) -> &[BusSlot];
    /// Readers that may sleep on the topic.
    fn flag_count(&self) -> usize;
    /// Reader `i`'s sleep flag.
    fn flag(&self, i: usize) -> Option<&SleepFlag>;
}

/// A topic on the heap (tests, loom models and in-process use).
#[derive(Debug)]
pub struct HeapBus {
    header: BusHeader,
    slots: Box<[BusSlot]>,
    flags: Box<[SleepFlag]>,
}

// SAFETY: the boxed header, slots and flags live as long as the `Arc`; the slot count is a
// power of two, fixed at construction.
unsafe impl BusStorage for Arc<HeapBus> {
    fn header(&self) -> &BusHeader {
        &self.header
    }
    fn slots(&self) -> &[BusSlot] {
        &self.slots
    }
    fn flag_count(&self) -> usize {
        self.flags.len()
    }
    fn flag(&self, i: usize) -> Option<&SleepFlag> {
        self.flags.get(i)
    }
}

/// A heap topic of `capacity` slots (rounded up to a power of two) and its writer, with
/// `readers` readers, each starting at the topic's first message.
pub fn heap_bus(
    capacity: usize,
    readers: usize,
) -> (BusWriter<Arc<HeapBus>>, Vec<BusReader<Arc<HeapBus>>>) {
    let capacity = capacity.max(2).next_power_of_two();
    let bus = Arc::new(HeapBus {
        header: BusHeader::default(),
        slots: (0..capacity).map(|_| BusSlot::default()).collect(),
        flags: (0..readers).map(|_| SleepFlag::default()).collect(),
    });
    let readers = (0..readers)
        .map(|i| BusReader::from_start(bus.clone(), Some(i)))
        .collect();
    (BusWriter::attach(bus), readers)
}

/// A message read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its number in the topic.
    pub seq: u64,
    /// Who published it, as the writer recorded it.
    pub publisher: u32,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Why no message was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Nothing new yet.
    #[error("no message yet")]
    Empty,
    /// The reader fell behind: this many messages were overwritten before it read them.
    /// It now stands at the oldest message still there.
    #[error("lagged: {0} messages lost")]
    Lagged(u64),
    /// The next message's slot made no sense (its length, or its page buffers); it was
    /// skipped.
    #[error("a corrupt message was skipped")]
    Corrupt,
}

/// A message the writer was given that it cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes do not fit in a slot ({INLINE_MAX} at most): send them by page buffer")]
pub struct TooLarge {
    /// The message's length.
    pub len: usize,
}

/// The writing end of a topic (one per topic).
#[derive(Debug)]
pub struct BusWriter<S: BusStorage> {
    storage: S,
    /// The next message's number: the authoritative copy, the shared one is published.
    next: u64,
    mask: u64,
    /// The page buffer each slot's message holds, as this writer wrote it (the shared
    /// copy could have been scribbled).
    buffers: Vec<u64>,
}

impl<S: BusStorage> BusWriter<S> {
    /// Attaches to a topic, going on from the count it holds. Only one writer may be
    /// attached to a topic at a time, and the topic's large messages' buffers (if any)
    /// are no longer this writer's to free.
    pub fn attach(storage: S) -> Self {
        // Relaxed: the only writer, attaching before any publish of its own.
        let next = storage.header().head.load(Ordering::Relaxed);
        let n = storage.slots().len();
        Self {
            next,
            mask: n as u64 - 1,
            buffers: vec![NO_BUFFER; n],
            storage,
        }
    }

    /// Messages published.
    pub fn published(&self) -> u64 {
        self.next
    }

    /// The topic's capacity.
    pub fn capacity(&self) -> usize {
        self.mask as usize + 1
    }

    /// Publishes an inline message of up to [`INLINE_MAX`] bytes. Returns the page buffer
    /// of the large message it overwrote, if any, for the caller to free.
    pub fn publish(&mut self, publisher: u32, bytes: &[u8]) -> Result<Option<u64>, TooLarge> {
        if bytes.len() > INLINE_MAX {
            return Err(TooLarge { len: bytes.len() });
        }
        Ok(self.write(publisher, bytes.len() as u32, NO_BUFFER, bytes))
    }

    /// Publishes a large message of `len` bytes already in page buffers, named by its
    /// first handle. Returns the page buffer of the large message it overwrote, if any:
    /// the caller frees that one (and keeps this one until it comes back so).
    pub fn publish_large(&mut self, publisher: u32, len: u32, buffer: u64) -> Option<u64> {
        self.write(publisher, len, buffer, &[])
    }

    fn write(&mut self, publisher: u32, len: u32, buffer: u64, bytes: &[u8]) -> Option<u64> {
        let n = self.next;
        let i = (n & self.mask) as usize;
        let slot = &self.storage.slots()[i];
        // Relaxed, then the fence: a reader that sees any of the writes below sees this
        // mark too (see the fence).
        slot.seq
            .store(n.wrapping_mul(2).wrapping_add(1), Ordering::Relaxed);
        // Release: SYNC POINT (slot being overwritten): pairs with the reader's Acquire
        // fence before its second load of `seq`: a reader that read any data written after
        // this fence then reads the odd mark (or later), and drops what it read.
        fence(Ordering::Release);
        let old = std::mem::replace(&mut self.buffers[i], buffer);
        // Relaxed (meta, buffer, data): ordered by the fence above and the Release below.
        slot.meta.store(
            u64::from(len) | (u64::from(publisher) << 32),
            Ordering::Relaxed,
        );
        slot.buffer.store(buffer, Ordering::Relaxed);
        store_words(&slot.data, bytes);
        // Release: SYNC POINT (slot written): pairs with the reader's Acquire load of
        // `seq`: a reader that reads `2n + 2` sees every word of message `n`.
        slot.seq
            .store(n.wrapping_mul(2).wrapping_add(2), Ordering::Release);
        self.next = n.wrapping_add(1);
        // Release: SYNC POINT (count published): pairs with a lagging reader's Acquire load
        // of `head`, which places it at the oldest message still there.
        self.storage
            .header()
            .head
            .store(self.next, Ordering::Release);
        self.wake_readers();
        (old != NO_BUFFER).then_some(old)
    }

    /// Wakes the readers sleeping on the topic, with one system call if any sleeps.
    fn wake_readers(&self) {
        let s = &self.storage;
        let word = &s.header().wake;
        let flags = (0..s.flag_count()).filter_map(|i| s.flag(i));
        WaitPair::wake_any(word, flags);
    }

    /// Overwrites a slot's words and the topic's count, as anything that could write the
    /// topic's memory might. For tests of the readers.
    #[doc(hidden)]
    pub fn scribble_for_tests(&self, slot: usize, words: [u64; 4], head: Option<u64>) {
        let s = &self.storage.slots()[slot & self.mask as usize];
        // Relaxed: simulating a writer that does not follow the protocol.
        s.seq.store(words[0], Ordering::Relaxed);
        s.meta.store(words[1], Ordering::Relaxed);
        s.buffer.store(words[2], Ordering::Relaxed);
        s.data[0].store(words[3], Ordering::Relaxed);
        if let Some(h) = head {
            self.storage.header().head.store(h, Ordering::Relaxed);
        }
    }

    /// The page buffers of the large messages the topic still holds (to free them when
    /// the topic goes).
    pub fn held_buffers(&self) -> impl Iterator<Item = u64> + '_ {
        self.buffers.iter().copied().filter(|&b| b != NO_BUFFER)
    }
}

/// The reading end of a topic: its own cursor, in its own memory.
#[derive(Debug)]
pub struct BusReader<S: BusStorage> {
    storage: S,
    /// The next message it wants.
    next: u64,
    mask: u64,
    /// Its sleep flag, if it may sleep.
    flag: Option<usize>,
}

impl<S: BusStorage> BusReader<S> {
    /// A reader of the messages published from now on; `flag` is its sleep flag's index,
    /// if it may sleep.
    pub fn subscribe(storage: S, flag: Option<usize>) -> Self {
        // Acquire: SYNC POINT (count published): pairs with the writer's Release of `head`.
        let next = storage.header().head.load(Ordering::Acquire);
        Self::at(storage, next, flag)
    }

    /// A reader from the first message the topic had (it lags at once if that is gone).
    pub fn from_start(storage: S, flag: Option<usize>) -> Self {
        Self::at(storage, 0, flag)
    }

    fn at(storage: S, next: u64, flag: Option<usize>) -> Self {
        let mask = storage.slots().len() as u64 - 1;
        let flag = flag.filter(|&i| i < storage.flag_count());
        Self {
            storage,
            next,
            mask,
            flag,
        }
    }

    /// The next message it will read.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Reads the next message, if there is one; inline messages only (a large one reads
    /// as [`BusError::Corrupt`]: use [`BusReader::try_recv_with`]).
    pub fn try_recv(&mut self) -> Result<Message, BusError> {
        self.try_recv_with(|_, _, _| false)
    }

    /// Reads the next message, copying a large one with `large(buffer, len, out)`, which
    /// appends the `len` bytes of the page buffers starting at `buffer` to `out` and says
    /// whether it could (the handle and length are unchecked: the callee checks them).
    pub fn try_recv_with(
        &mut self,
        large: impl FnMut(u64, u64, &mut Vec<u8>) -> bool,
    ) -> Result<Message, BusError> {
        read_next(&self.storage, &mut self.next, self.mask, large)
    }

    /// Waits for the next message (or a lag, or a corrupt slot) at most `timeout`:
    /// spinning `spins` times, then sleeping on the topic's wake word if the reader has
    /// a sleep flag (else polling with short sleeps). `Err(Empty)` when the time ran out.
    pub fn recv_with(
        &mut self,
        spins: u32,
        timeout: Option<Duration>,
        mut large: impl FnMut(u64, u64, &mut Vec<u8>) -> bool,
    ) -> Result<Message, BusError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut i = 0u32;
        loop {
            match self.try_recv_with(&mut large) {
                Err(BusError::Empty) => {}
                other => return other,
            }
            if i < spins {
                i += 1;
                crate::shm::sync::spin_loop();
                // Check the clock only now and then while spinning.
                if i % 1024 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(BusError::Empty);
                }
                continue;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(l) if !l.is_zero() => Some(l),
                    _ => return Err(BusError::Empty),
                },
                None => None,
            };
            let (storage, next, mask) = (&self.storage, &mut self.next, self.mask);
            let Some(flag) = self.flag.and_then(|f| storage.flag(f)) else {
                std::thread::sleep(left.map_or(Duration::from_micros(50), |l| {
                    l.min(Duration::from_micros(50))
                }));
                continue;
            };
            let pair = WaitPair {
                word: &storage.header().wake,
                flag,
            };
            let token = pair.prepare();
            let got = read_next(storage, next, mask, &mut large);
            if got != Err(BusError::Empty) {
                pair.finish();
                return got;
            }
            pair.sleep(token, left);
            pair.finish();
        }
    }
}

/// [`BusReader::try_recv_with`] on a reader's parts (so that a waiting reader can hold its
/// sleep flag while it reads).
fn read_next<S: BusStorage>(
    storage: &S,
    next: &mut u64,
    mask: u64,
    mut large: impl FnMut(u64, u64, &mut Vec<u8>) -> bool,
) -> Result<Message, BusError> {
    let n = *next;
    let want = n.wrapping_mul(2).wrapping_add(2);
    let slot = &storage.slots()[(n & mask) as usize];
    // Acquire: SYNC POINT (slot written): pairs with the writer's Release of `2n + 2`.
    let s1 = slot.seq.load(Ordering::Acquire);
    if s1 != want {
        if s1 < want {
            return Err(BusError::Empty); // not yet written (or being written)
        }
        return lagged(storage, next, mask);
    }
    // Relaxed (meta, buffer, data): checked by the second load of `seq` below.
    let meta = slot.meta.load(Ordering::Relaxed);
    let buffer = slot.buffer.load(Ordering::Relaxed);
    let (len, publisher) = (meta as u32 as usize, (meta >> 32) as u32);
    let mut bytes = Vec::new();
    let ok = if buffer == NO_BUFFER {
        if len <= INLINE_MAX {
            load_words(&slot.data, len, &mut bytes);
            true
        } else {
            false
        }
    } else {
        large(buffer, len as u64, &mut bytes)
    };
    // Acquire: SYNC POINT (slot being overwritten): pairs with the writer's Release
    // fence after its odd mark: if anything read above was written after that mark,
    // the load below reads the mark (or later).
    fence(Ordering::Acquire);
    // Relaxed: ordered by the fence above.
    let s2 = slot.seq.load(Ordering::Relaxed);
    if s2 != s1 {
        return lagged(storage, next, mask); // overwritten while read
    }
    *next = n.wrapping_add(1);
    if !ok {
        return Err(BusError::Corrupt);
    }
    Ok(Message {
        seq: n,
        publisher,
        bytes,
    })
}

/// The writer has overwritten the message wanted: go to the oldest one still there,
/// saying how many were lost; or, if the count does not show that yet, wait.
fn lagged<S: BusStorage>(storage: &S, next: &mut u64, mask: u64) -> Result<Message, BusError> {
    // Acquire: SYNC POINT (count published): pairs with the writer's Release of `head`.
    let head = storage.header().head.load(Ordering::Acquire);
    // The oldest slot may be being overwritten: the oldest whole message is one past.
    let oldest = head.saturating_sub(mask);
    if oldest <= *next {
        return Err(BusError::Empty);
    }
    let lost = oldest - *next;
    *next = oldest;
    Err(BusError::Lagged(lost))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn messages_come_in_order_with_their_publisher() {
        let (mut tx, mut rx) = heap_bus(8, 1);
        let rx = &mut rx[0];
        assert_eq!(rx.try_recv(), Err(BusError::Empty));
        let long = vec![7u8; INLINE_MAX];
        tx.publish(3, b"").unwrap();
        tx.publish(4, b"abcdefghi").unwrap();
        tx.publish(5, &long).unwrap();
        assert!(tx.publish(5, &[0; INLINE_MAX + 1]).is_err());
        let got: Vec<Message> = (0..3).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got[0].bytes, b"");
        assert_eq!((got[1].seq, got[1].publisher), (1, 4));
        assert_eq!(got[1].bytes, b"abcdefghi");
        assert_eq!(got[2].bytes, long);
        assert_eq!(rx.try_recv(), Err(BusError::Empty));
    }

    #[test]
    fn a_reader_that_falls_behind_is_told_by_how_much_and_resumes() {
        let (mut tx, mut rx) = heap_bus(4, 1);
        for i in 0..100u64 {
            tx.publish(0, &i.to_le_bytes()).unwrap();
        }
        let rx = &mut rx[0];
        // 100 messages, 4 slots: 96..=99 are there, 96's slot is the next to go.
        assert_eq!(rx.try_recv(), Err(BusError::Lagged(97)));
        for i in 97..100u64 {
            assert_eq!(rx.try_recv().unwrap().bytes, i.to_le_bytes());
        }
        assert_eq!(rx.try_recv(), Err(BusError::Empty));
        // A late subscriber sees only what comes after it.
        let mut late = BusReader::subscribe(tx.storage.clone(), None);
        tx.publish(0, b"new").unwrap();
        assert_eq!(late.try_recv().unwrap().bytes, b"new");
    }

    #[test]
    fn large_messages_go_by_buffer_and_come_back_to_be_freed() {
        let (mut tx, mut rx) = heap_bus(2, 1);
        assert_eq!(tx.publish_large(1, 1000, 17), None);
        let m = rx[0]
            .try_recv_with(|buffer, len, out| {
                out.extend(std::iter::repeat_n(buffer as u8, len as usize));
                true
            })
            .unwrap();
        assert_eq!(m.bytes, vec![17u8; 1000]);
        tx.publish(1, b"x").unwrap();
        // The third message overwrites the first's slot: its buffer is the caller's again.
        assert_eq!(tx.publish(1, b"y").unwrap(), Some(17));
        assert_eq!(tx.held_buffers().count(), 0);
        // A reader that cannot copy a large message skips it as corrupt.
        tx.publish_large(1, 10, 3);
        let mut rx = BusReader::from_start(tx.storage.clone(), None);
        // Two slots: only the newest message is sure to be whole.
        assert_eq!(rx.try_recv(), Err(BusError::Lagged(3)));
        assert_eq!(rx.try_recv(), Err(BusError::Corrupt));
        assert_eq!(rx.try_recv(), Err(BusError::Empty));
    }

    #[test]
    fn a_sleeping_reader_is_woken() {
        let (mut tx, mut rx) = heap_bus(16, 1);
        let mut rx = rx.pop().unwrap();
        let t = std::thread::spawn(move || {
            rx.recv_with(0, Some(Duration::from_secs(10)), |_, _, _| false)
        });
        std::thread::sleep(Duration::from_millis(20));
        tx.publish(0, b"wake").unwrap();
        assert_eq!(t.join().unwrap().unwrap().bytes, b"wake");
    }

    #[test]
    fn two_threads_never_see_a_torn_or_reordered_message() {
        let (mut tx, mut rx) = heap_bus(8, 1);
        let mut rx = rx.pop().unwrap();
        const N: u64 = 200_000;
        let reader = std::thread::spawn(move || {
            let (mut last, mut lost, mut seen) = (None::<u64>, 0u64, 0u64);
            while last != Some(N - 1) {
                match rx.try_recv() {
                    Ok(m) => {
                        // Every word of a message carries its number.
                        let v = u64::from_le_bytes(m.bytes[..8].try_into().unwrap());
                        assert!(m.bytes.chunks(8).all(|c| c == v.to_le_bytes()), "torn");
                        assert_eq!(v, m.seq);
                        assert!(last.is_none_or(|l| v > l), "out of order");
                        last = Some(v);
                        seen += 1;
                    }
                    Err(BusError::Lagged(n)) => lost += n,
                    Err(BusError::Empty) => std::hint::spin_loop(),
                    Err(BusError::Corrupt) => panic!("corrupt"),
                }
            }
            (seen, lost)
        });
        for i in 0..N {
            let msg: Vec<u8> = std::iter::repeat_n(i.to_le_bytes(), 12).flatten().collect();
            tx.publish(0, &msg).unwrap();
        }
        let (seen, lost) = reader.join().unwrap();
        assert!(seen + lost <= N && seen > 0, "{seen} {lost}");
    }
}
