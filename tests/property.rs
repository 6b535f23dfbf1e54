//! Property tests: whatever an agent writes into the segment (descriptors, handles, ring
//! counters, ledger words, chain links, header fields, bus slots and counts), every reader
//! answers with a value or an error, never a panic or an out-of-bounds access.

use neuralflow_swarm::bus::{heap_bus, BusError, INLINE_MAX};
use neuralflow_swarm::descriptor::Descriptor;
use neuralflow_swarm::kv::{heap_kv, KvError, VALUE_MAX};
use neuralflow_swarm::ring::{heap_ring, PopError, PushError};
use neuralflow_swarm::segment::{Segment, SegmentConfig, SegmentError};
use neuralflow_swarm::slab::{HeapSlab, Owner, PageHandle, Slab};
use proptest::prelude::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const COUNT: u32 = 12;
const SIZE: usize = 64;

fn any_owner() -> impl Strategy<Value = Owner> {
    prop_oneof![Just(Owner::Supervisor), (0u32..4).prop_map(Owner::Agent)]
}

/// A raw handle: mostly plausible (small index, small generation), sometimes anything.
fn any_raw_handle() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u32..COUNT + 2, 0u32..3).prop_map(|(i, g)| PageHandle {
            index: i,
            generation: g
        }
        .to_raw()),
        any::<u64>(),
        Just(PageHandle::NIL_RAW),
    ]
}

fn any_len() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..(3 * SIZE as u64), any::<u64>()]
}

#[derive(Debug, Clone)]
enum Corruption {
    Owner(u32, u32),
    Generation(u32, u32),
    Len(u32, u32),
    Next(u32, u64),
}

fn any_corruption() -> impl Strategy<Value = Corruption> {
    let idx = 0..COUNT;
    prop_oneof![
        (idx.clone(), prop_oneof![0u32..6, any::<u32>()])
            .prop_map(|(i, w)| Corruption::Owner(i, w)),
        (idx.clone(), 0u32..3).prop_map(|(i, g)| Corruption::Generation(i, g)),
        (
            idx.clone(),
            prop_oneof![0u32..(2 * SIZE as u32), any::<u32>()]
        )
            .prop_map(|(i, l)| Corruption::Len(i, l)),
        (idx, any_raw_handle()).prop_map(|(i, n)| Corruption::Next(i, n)),
    ]
}

fn apply(slab: &Slab<Arc<HeapSlab>>, c: &Corruption) {
    let words = |i: u32| slab.words(i).expect("a buffer of the slab");
    match *c {
        Corruption::Owner(i, w) => words(i).0.store(w, Ordering::Relaxed),
        Corruption::Generation(i, g) => words(i).1.words().0.store(g, Ordering::Relaxed),
        Corruption::Len(i, l) => words(i).1.words().1.store(l, Ordering::Relaxed),
        Corruption::Next(i, n) => words(i).1.words().2.store(n, Ordering::Relaxed),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Page buffers by owner: an agent writes payloads into its own pool, then writes
    /// anything over its pool's ledger words and metadata (all it can write there), and
    /// the supervisor probes what it is handed. The supervisor's own chains (in its pool,
    /// which the agent can only read) read back exactly, whatever happened, and nothing
    /// panics.
    #[test]
    fn an_agent_that_scribbles_its_pool_cannot_touch_the_supervisors(
        mine in prop::collection::vec(1usize..300, 1..3),
        theirs in prop::collection::vec(0usize..(3 * 64), 0..4),
        corruptions in prop::collection::vec((0u32..4, 0u8..4, any::<u64>()), 0..8),
        probes in prop::collection::vec((0u32..20, 0u32..3, any_len()), 1..10),
    ) {
        let seg = Segment::create(SegmentConfig {
            agent_slots: 2,
            ring_capacity: 8,
            buffer_size: 64,
            buffer_count: 8,
            agent_buffers: 4,
        topics: 4,
        topic_capacity: 256,
state_entries: 1024,
})
        .unwrap();
        let (s, f, c) = seg.dup_agent_fds(1).unwrap();
        let agent = Segment::open_agent(1, s, f, c).unwrap();
        let (sup, own) = (seg.slab(0), agent.slab(0).lowest_first());
        let kept: Vec<(Vec<PageHandle>, Vec<u8>)> = mine
            .iter()
            .enumerate()
            .filter_map(|(k, &len)| {
                let bytes = vec![k as u8 + 1; len];
                let handles = sup.write_payload_handles(Owner::Supervisor, &bytes).ok()?;
                Some((handles, bytes))
            })
            .collect();
        for len in &theirs {
            let _ = own.write_payload(Owner::Agent(1), &vec![0xCD; *len]);
        }
        // The agent's pool is indices 12..16 in the index space.
        for &(k, field, v) in &corruptions {
            let (owner, meta) = own.words(12 + k).expect("its own pool");
            let (generation, len, next) = meta.words();
            match field {
                0 => owner.store(v as u32, Ordering::Relaxed),
                1 => generation.store(v as u32, Ordering::Relaxed),
                2 => len.store(v as u32, Ordering::Relaxed),
                _ => next.store(v, Ordering::Relaxed),
            }
        }
        for (index, generation, len) in probes {
            let raw = PageHandle { index, generation }.to_raw();
            if let Ok(handles) = sup.claim_chain(raw, len, Owner::Agent(1), Owner::Supervisor) {
                prop_assert!(handles.iter().all(|h| (12..16).contains(&h.index)));
                if let Ok(parts) = sup.handle_segments(&handles, len, Owner::Supervisor) {
                    prop_assert_eq!(parts.iter().map(|p| p.len() as u64).sum::<u64>(), len);
                }
                sup.release_handles(&handles, Owner::Supervisor);
            }
        }
        let held: Vec<u32> = kept
            .iter()
            .flat_map(|(handles, _)| handles.iter().map(|h| h.index))
            .collect();
        sup.sweep(2, |i| held.contains(&i));
        sup.reclaim(Owner::Agent(1));
        for (handles, bytes) in &kept {
            let raw = handles[0].to_raw();
            prop_assert_eq!(
                &sup.read_payload(raw, bytes.len() as u64, Owner::Supervisor).unwrap(),
                bytes
            );
        }
    }

    /// Random payloads written by random holders, then random corruption of the ledger and
    /// chain metadata, then random (handle, length, holder) triples fed to every reader.
    #[test]
    fn slab_readers_never_panic(
        payloads in prop::collection::vec((any_owner(), 0usize..(3 * SIZE)), 0..6),
        corruptions in prop::collection::vec(any_corruption(), 0..6),
        probes in prop::collection::vec((any_raw_handle(), any_len(), any_owner(), any_owner()), 1..12),
    ) {
        let slab = Slab::new(Arc::new(HeapSlab::new(COUNT, SIZE)), 0);
        let mut written = Vec::new();
        for (owner, len) in &payloads {
            if let Ok(h) = slab.write_payload(*owner, &vec![0xAB; *len]) {
                written.push((h.to_raw(), *len as u64, *owner));
            }
        }
        for c in &corruptions {
            apply(&slab, c);
        }
        // Probe with real handles too (now possibly corrupted underneath).
        let probes = probes.into_iter().chain(written.iter().map(|&(r, l, o)| (r, l, o, Owner::Supervisor)));
        for (raw, len, holder, to) in probes {
            if let Ok(bytes) = slab.read_payload(raw, len, holder) {
                prop_assert_eq!(bytes.len() as u64, len);
            }
            if let Ok(parts) = slab.segments(raw, len, holder) {
                prop_assert_eq!(parts.iter().map(|p| p.len() as u64).sum::<u64>(), len);
                prop_assert!(parts.iter().all(|p| p.len() <= SIZE));
            }
            let _ = slab.claim_chain(raw, len, holder, to);
            let _ = slab.release_chain(raw, len, to);
            if let Some(h) = PageHandle::from_raw(raw) {
                let _ = slab.check(h, holder);
                let _ = slab.release(h, holder);
            }
        }
        // Reclaiming every holder leaves only buffers whose owner word was corrupted to a
        // value no holder encodes.
        for o in [Owner::Supervisor, Owner::Agent(0), Owner::Agent(1), Owner::Agent(2), Owner::Agent(3)] {
            slab.reclaim(o);
            prop_assert_eq!(slab.held_by(o), 0);
        }
    }

    /// A ring whose counters a peer scribbled over: pops and pushes return values or errors,
    /// and never hand out more than the capacity.
    #[test]
    fn ring_endpoints_survive_scribbled_counters(
        pushes in 0usize..10,
        head in prop_oneof![0u64..20, any::<u64>()],
        tail in prop_oneof![0u64..20, any::<u64>()],
        descs in prop::collection::vec(any::<(u64, u32, u32, u64, u64, u64, u32, u32)>(), 0..8),
    ) {
        let (mut tx, mut rx) = heap_ring::<Descriptor>(8);
        for d in descs.iter().take(pushes) {
            let d = Descriptor { task_id: d.0, attempt: d.1, kind: d.2, buffer: d.3, len: d.4, arg: d.5, arg2: d.6, flags: d.7 };
            let _ = tx.push(d);
        }
        scribble(rx.storage(), head, tail);
        let mut out = Vec::new();
        match rx.pop_batch(&mut out, 100) {
            Ok(n) => prop_assert!(n <= 8 && out.len() == n),
            Err(_) => prop_assert!(out.is_empty()),
        }
        match rx.pop() { Ok(_) | Err(PopError::Empty) | Err(PopError::Corrupt(_)) => {} }
        match tx.push(Descriptor::default()) { Ok(()) | Err(PushError::Full(_)) | Err(PushError::Corrupt(_)) => {} }
        prop_assert!(tx.push_batch(&[Descriptor::default(); 3]).map_or(true, |n| n <= 3));
    }

    /// A topic whose slots and count were scribbled over: a reader answers with messages no
    /// longer than a slot holds (or what its page-buffer reader vouched for), lags,
    /// emptiness or corrupt messages, never a panic, and never reads the same message
    /// number twice or goes backwards.
    #[test]
    fn bus_readers_survive_scribbled_slots_and_counts(
        published in 0usize..12,
        edits in prop::collection::vec(
            (0usize..4, prop_oneof![0u64..40, any::<u64>()], any::<u64>(),
             prop_oneof![Just(u64::MAX), any::<u64>()], any::<u64>()),
            0..6),
        head in prop::option::of(prop_oneof![0u64..40, any::<u64>()]),
    ) {
        let (mut tx, mut readers) = heap_bus(4, 1);
        let mut rx = readers.pop().unwrap();
        for i in 0..published {
            tx.publish(0, &[i as u8; 20]).unwrap();
        }
        for (i, (slot, seq, meta, buffer, word)) in edits.iter().enumerate() {
            let h = if i == 0 { head } else { None };
            tx.scribble_for_tests(*slot, [*seq, *meta, *buffer, *word], h);
        }
        let mut last = None::<u64>;
        for _ in 0..64 {
            let before = rx.position();
            match rx.try_recv_with(|_, len, out| { if len <= 1024 { out.resize(len as usize, 0); true } else { false } }) {
                Ok(m) => {
                    prop_assert!(m.bytes.len() <= INLINE_MAX.max(1024));
                    prop_assert_eq!(m.seq, before);
                    prop_assert!(last.is_none_or(|l| m.seq > l));
                    last = Some(m.seq);
                }
                Err(BusError::Empty) => break,
                Err(BusError::Lagged(n)) => prop_assert!(n > 0 && rx.position() > before),
                Err(BusError::Corrupt) => prop_assert_eq!(rx.position(), before.wrapping_add(1)),
            }
        }
    }

    /// A state table whose entries were scribbled over: a read answers with a value that
    /// fits, none, or an error, never a panic, and a key written after still reads back.
    #[test]
    fn state_readers_survive_scribbled_entries(
        keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..8), 0..6),
        edits in prop::collection::vec(
            (0usize..8, prop_oneof![Just(0u64), Just(2u64), any::<u64>()], any::<u64>(),
             prop_oneof![0u64..600, any::<u64>()], any::<u64>(), any::<u64>()),
            0..6),
    ) {
        let (mut w, r) = heap_kv(8);
        for (i, k) in keys.iter().enumerate() {
            w.put(k, k, i as u64).unwrap();
        }
        for (entry, seq, version, lens, hash, word) in &edits {
            // A word left odd is a writer stuck mid-write: readers give up after a second.
            let seq = seq & !1;
            w.scribble_for_tests(*entry, [seq, *version, *lens, *hash, *word]);
        }
        for k in keys.iter().chain([b"absent".to_vec()].iter()) {
            match r.get(k) {
                Ok(Some((_, v))) => prop_assert!(v.len() <= VALUE_MAX),
                Ok(None) | Err(KvError::Corrupt) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }

    /// Random bytes over a segment header: open answers Ok with a layout that fits the file
    /// or an error, never a panic.
    #[test]
    fn segment_open_survives_garbage_headers(
        edits in prop::collection::vec((0usize..256, any::<u8>()), 1..8),
    ) {
        let seg = Segment::create(SegmentConfig { agent_slots: 1, ring_capacity: 8, buffer_size: 64, buffer_count: 4, agent_buffers: 2, topics: 4, topic_capacity: 256, state_entries: 1024 }).unwrap();
        for (off, byte) in &edits {
            seg.scribble_header_for_tests(*off, *byte);
        }
        let (s, f, c) = seg.dup_agent_fds(0).unwrap();
        match Segment::open_agent(0, s, f, c) {
            Ok(s) => prop_assert!(s.layout().total_size == seg.layout().total_size),
            Err(e) => { let _: SegmentError = e; }
        }
    }
}

fn scribble(storage: &Arc<neuralflow_swarm::ring::HeapRing<Descriptor>>, head: u64, tail: u64) {
    use neuralflow_swarm::ring::RingStorage;
    storage.sides().scribble_for_tests(head, tail);
}
