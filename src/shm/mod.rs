//! Layers 1–3: shared memory and what lives in it.
//!
//! - Primitives: [`plain`] (what may live in shared memory), the loom-swappable [`sync`]
//!   shims, [`futex`] wait words.
//! - Building blocks generic over their storage: [`ring`] (SPSC descriptor rings),
//!   [`bus`] (broadcast rings: one writer, readers that never hold it up), [`kv`] (a
//!   key-value table one writer fills and readers read in place),
//!   [`slab`] (page buffers and their ownership ledger), [`heartbeat`] words, and the
//!   [`descriptor`] that travels through rings.
//! - [`segment`]: the memfd segment that places those blocks in one mapping shared by the
//!   supervisor and its agents.
//!
//! Nothing here knows about tasks, agents or processes beyond "another process maps this".

pub mod bus;
pub mod descriptor;
pub mod futex;
pub mod heartbeat;
pub mod kv;
pub mod plain;
pub mod ring;
pub mod segment;
pub mod slab;
pub mod sync;
