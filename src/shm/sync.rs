//! Atomics, cells and spin hints, swapped for loom's models under `cfg(loom)`.
//!
//! Every lock-free structure in this crate imports its primitives from here, so that
//! `RUSTFLAGS="--cfg loom" cargo test --test loom` explores the same code that runs in
//! production, only with loom's model checker underneath.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A cell with loom's closure-based access API, so that loom can track every access.
///
/// Outside loom it is `#[repr(transparent)]` over `std::cell::UnsafeCell`, which lets a slot
/// array placed in a shared segment be viewed as `[UnsafeCell<T>]`.
#[cfg(not(loom))]
#[repr(transparent)]
#[derive(Debug)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a pointer for reading.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a pointer for writing.
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub use loom::cell::UnsafeCell;

/// One iteration of a busy-wait loop. Under loom it yields, so that the model checker can
/// schedule the thread being waited for.
#[inline(always)]
pub fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Writes `bytes` into `words`, little-endian, eight a word (the last padded with zeroes),
/// with relaxed stores: the data words of a seqlock, ordered by its sequence word.
pub(crate) fn store_words(words: &[AtomicU64], bytes: &[u8]) {
    for (w, chunk) in words.iter().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        // Relaxed: ordered by the caller's sequence word.
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

/// Reads `len` bytes (at most eight a word of `words`) into `out`, which it clears first,
/// with relaxed loads: what [`store_words`] wrote, if the sequence word says so.
pub(crate) fn load_words(words: &[AtomicU64], len: usize, out: &mut Vec<u8>) {
    out.clear();
    // `len` may come from another process: never more than the words hold.
    let len = len.min(words.len() * 8);
    out.reserve_exact(len);
    for w in &words[..len.div_ceil(8)] {
        // Relaxed: checked by the caller's second load of its sequence word.
        out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    out.truncate(len);
}
