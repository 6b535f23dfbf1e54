//! Plain data: types that may be placed in shared memory and read back from it.
//!
//! A value read from a segment may have been written by a misbehaving or dead agent, so
//! every type that crosses the segment must be valid for every bit pattern and must not hold
//! pointers, references or anything with a destructor.

/// Types valid for any bit pattern, with no pointers and no drop glue.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]` (or a primitive), contain only integer fields (or
/// arrays or other `Plain` structs of them), and have no padding whose reading would be
/// undefined. Any bit pattern must be a valid value.
pub unsafe trait Plain: Copy + Send + 'static {
    /// The all-zeroes value.
    fn zeroed() -> Self {
        // SAFETY: `Plain` types are valid for every bit pattern, zeroes included.
        unsafe { std::mem::zeroed() }
    }
}

// SAFETY: primitive integers are valid for every bit pattern.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}

/// A value aligned to (and padded out to) 128 bytes, so that two of them never share a cache
/// line or an adjacent-line prefetch pair.
///
/// NB: `crossbeam_utils::CachePadded` does the same for process-local data, but its layout is
/// `repr(Rust)`; anything in a shared segment must have a layout fixed by `repr(C)`, hence
/// this twin. 128 bytes follows crossbeam's choice for x86_64 and aarch64 (Intel's spatial
/// prefetcher pulls cache lines in pairs; see crossbeam-utils `cache_padded.rs`).
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct SharedLine<T>(pub T);

impl<T> std::ops::Deref for SharedLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
