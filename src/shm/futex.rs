//! A wait word for sleeping on a ring: a futex in the shared segment plus a waiter flag, so
//! that the side that publishes pays for a wake-up system call only when the other side is
//! really asleep.
//!
//! The protocol (one waker per word; each ring has two words, one per direction, with one
//! sleeper each; a bus topic's word has a sleeper per reader, each with its own flag):
//!
//! ```text
//! sleeper                                 waker
//! seq0 = seq.load()                       publish (Release store of the ring index)
//! waiting.store(1)                        fence(SeqCst)            -- F2
//! fence(SeqCst)                 -- F1     if waiting.load() == 1 {
//! if condition still false {                  seq.fetch_add(1)
//!     futex_wait(seq, seq0)                   futex_wake(seq)
//! }                                       }
//! waiting.store(0)
//! ```
//!
//! F1 and F2 order each side's store before its load, so at least one side sees the other's
//! write: either the sleeper sees the published index and does not sleep, or the waker sees
//! the flag and wakes it. `futex_wait` itself returns at once if `seq` moved after `seq0` was
//! read, which covers a wake that lands between the check and the system call.
//!
//! The futex is a shared (not `FUTEX_PRIVATE_FLAG`) futex because the word lives in a
//! `MAP_SHARED` mapping used by several processes. Under loom the kernel's futex is modelled
//! with a mutex and a condition variable that obey the same contract.

use crate::shm::sync::{fence, AtomicU32, Ordering};
use std::time::Duration;

/// The futex word: bumped by the waker on every wake-up, slept on by the sleeper. Zeroed
/// memory is a valid, idle word.
#[repr(C)]
#[derive(Debug, Default)]
pub struct WakeWord {
    seq: AtomicU32,
    #[cfg(loom)]
    model: LoomFutex,
}

/// The sleeper's flag: 1 while it is (about to be) asleep on the waker's [`WakeWord`].
/// Zeroed memory is a valid, idle flag.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SleepFlag {
    waiting: AtomicU32,
}

impl SleepFlag {
    /// Clears the flag of a sleeper that is gone (a dead agent's), so that wakers stop
    /// making the wake-up call for it.
    pub fn clear(&self) {
        // Relaxed: its sleeper is gone; nothing is read on the strength of it.
        self.waiting.store(0, Ordering::Relaxed);
    }
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<WakeWord>() == 4);
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<SleepFlag>() == 4);

/// A wake word and a sleep flag wherever each lives: the protocol above. The word is
/// written only by the waker and the flag by the sleeper (and cleared by whoever replaces
/// a dead sleeper, [`SleepFlag::clear`]), so each can live in memory only its writer may
/// write (the other maps it read-only: a futex waits and wakes on a read-only mapping as
/// well).
#[derive(Debug, Clone, Copy)]
pub struct WaitPair<'a> {
    /// The waker's word.
    pub word: &'a WakeWord,
    /// The sleeper's flag.
    pub flag: &'a SleepFlag,
}

impl WaitPair<'_> {
    /// Sleeper, step 1: announce the intention to sleep. Returns the token to pass to
    /// [`WaitPair::sleep`]. After this the caller must re-check its condition.
    #[inline]
    pub fn prepare(self) -> u32 {
        // Relaxed: the value is only compared by the kernel (or the loom model) against the
        // word's current value; a stale read just makes the sleep return at once.
        let token = self.word.seq.load(Ordering::Relaxed);
        // Relaxed: F1 below orders this store before the sleeper's re-check.
        self.flag.waiting.store(1, Ordering::Relaxed);
        // SYNC POINT (F1): the waiter flag is ordered before the re-check of the ring index;
        // pairs with F2 in `wake`.
        fence(Ordering::SeqCst);
        token
    }

    /// Sleeper, step 2: sleep until woken, the token is stale, or the timeout passes.
    /// Spurious returns are allowed; callers loop on their condition.
    #[inline]
    pub fn sleep(self, token: u32, timeout: Option<Duration>) {
        #[cfg(not(loom))]
        futex_wait(&self.word.seq, token, timeout);
        #[cfg(loom)]
        {
            let _ = timeout;
            self.word.model.wait(&self.word.seq, token);
        }
    }

    /// Sleeper, step 3: the sleeper is awake again (or never slept).
    #[inline]
    pub fn finish(self) {
        // Relaxed: a stale 1 seen by the waker only causes one unneeded wake-up; the sleeper
        // is the only writer while it lives, so this cannot hide a later `prepare`.
        self.flag.waiting.store(0, Ordering::Relaxed);
    }

    /// Waker: call after publishing. Wakes the sleeper if it announced itself.
    #[inline]
    pub fn wake(self) {
        // SYNC POINT (F2): the published ring index is ordered before the read of the waiter
        // flag; pairs with F1 in `prepare`.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by F2 above.
        if self.flag.waiting.load(Ordering::Relaxed) != 0 {
            self.word.wake_slow();
        }
    }

    /// [`WaitPair::wake`] for many sleepers on one word (the readers of a bus topic): one
    /// fence, then one wake-up if any of `flags` is set.
    #[inline]
    pub fn wake_any<'f>(word: &WakeWord, flags: impl Iterator<Item = &'f SleepFlag>) {
        // SYNC POINT (F2): as in `wake`, for every flag read below; pairs with F1 in each
        // sleeper's `prepare`.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by F2 above.
        if flags
            .into_iter()
            .any(|f| f.waiting.load(Ordering::Relaxed) != 0)
        {
            word.wake_slow();
        }
    }
}

impl WakeWord {
    #[cold]
    fn wake_slow(&self) {
        // NB: the flag is left for the sleeper to clear (see the module docs).
        // Relaxed: F2 has ordered the publish before this; the bump carries no data, only
        // a new value for `futex_wait` to compare (the ring index carries the visibility).
        self.seq.fetch_add(1, Ordering::Relaxed);
        #[cfg(not(loom))]
        futex_wake(&self.seq);
        #[cfg(loom)]
        self.model.wake();
    }
}

#[cfg(not(loom))]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY:
    // - `word` is a live, 4-byte aligned atomic for the duration of the call;
    // - FUTEX_WAIT only reads it, compares it with `expected` and sleeps;
    // - `ts_ptr` is null or points to a timespec that outlives the call.
    // EINTR, EAGAIN (value changed) and ETIMEDOUT are all fine: the caller re-checks.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        );
    }
}

#[cfg(not(loom))]
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned atomic; FUTEX_WAKE does not access its memory beyond
    // using its address as a key.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// The kernel futex's contract, modelled for loom: `wait` sleeps only if the word still
/// holds `expected` when checked under the lock that `wake` also takes.
#[cfg(loom)]
#[derive(Debug, Default)]
struct LoomFutex {
    lock: loom::sync::Mutex<()>,
    cond: loom::sync::Condvar,
}

#[cfg(loom)]
impl LoomFutex {
    fn wait(&self, word: &AtomicU32, expected: u32) {
        let mut guard = self.lock.lock().unwrap();
        while word.load(Ordering::Relaxed) == expected {
            guard = self.cond.wait(guard).unwrap();
        }
    }

    fn wake(&self) {
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_all();
    }
}
