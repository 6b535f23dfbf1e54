//! Loom models of the lock-free paths: ring push/pop, batches, the futex wake-up protocol,
//! the slab's allocate/release path, the bus's publish/lag/resume protocol, and the shared
//! state's read against its write.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test --release --test loom`
#![cfg(loom)]

use loom::thread;
use neuralflow_swarm::bus::{heap_bus, BusError};
use neuralflow_swarm::kv::heap_kv;
use neuralflow_swarm::ring::{heap_ring, PopError, Wait};
use neuralflow_swarm::slab::{HeapSlab, Owner, Slab};
use std::sync::Arc;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Values pushed one by one and in a batch arrive once each, in order, through a ring small
/// enough to fill and wrap.
#[test]
fn ring_push_pop_and_batches_keep_order() {
    model(|| {
        let (mut tx, mut rx) = heap_ring::<u64>(2);
        let producer = thread::spawn(move || {
            let mut next = 1u64;
            while next <= 3 {
                let batch: Vec<u64> = (next..=3).collect();
                let n = tx.push_batch(&batch).unwrap();
                next += n as u64;
                if n == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        let mut out = Vec::new();
        while got.len() < 3 {
            if got.len() % 2 == 0 {
                out.clear();
                rx.pop_batch(&mut out, 2).unwrap();
                got.extend_from_slice(&out);
                if out.is_empty() {
                    thread::yield_now();
                }
            } else {
                match rx.pop() {
                    Ok(v) => got.push(v),
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
    });
}

/// Both sides sleep on the futex as soon as they must wait (no spinning): a lost wake-up
/// would leave a thread asleep forever, which loom reports as a deadlock.
#[test]
fn ring_futex_wakeups_are_never_lost() {
    model(|| {
        let (mut tx, mut rx) = heap_ring::<u64>(1);
        let producer = thread::spawn(move || {
            for v in 0..2u64 {
                tx.push_wait(v, Wait::SpinThenSleep(0), None).unwrap();
            }
        });
        for v in 0..2u64 {
            assert_eq!(rx.pop_wait(Wait::SpinThenSleep(0), None).unwrap(), v);
        }
        producer.join().unwrap();
    });
}

/// Two holders allocate, write their buffer, and release it, concurrently. Loom checks
/// that no buffer is ever handed to both (their writes to it would race) and that every
/// buffer is free at the end.
#[test]
fn slab_alloc_release_never_double_allocates() {
    model(|| {
        let slab = Arc::new(Slab::new(Arc::new(HeapSlab::new(2, 8)), 0));
        let cells = Arc::new(Cells(
            (0..2).map(|_| loom::cell::UnsafeCell::new(0)).collect(),
        ));
        let workers: Vec<_> = (0..2u32)
            .map(|agent| {
                let slab = slab.clone();
                let cells = cells.clone();
                thread::spawn(move || {
                    let me = Owner::Agent(agent);
                    let h = slab.alloc(me).unwrap();
                    // SAFETY: loom tracks this access; two holders of the same buffer
                    // would be reported as a data race.
                    cells.0[h.index as usize].with_mut(|p| unsafe { *p = agent });
                    slab.release(h, me).unwrap();
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(slab.free_count(), 2);
    });
}

/// One cell per buffer, written by whoever holds the buffer.
struct Cells(Vec<loom::cell::UnsafeCell<u32>>);

// SAFETY: access is what is under test: loom tracks every access to the cells and reports
// two holders writing the same one as a data race.
unsafe impl Sync for Cells {}

/// A release racing a reclaim of the same holder: the buffer is freed exactly once.
#[test]
fn slab_release_racing_reclaim_frees_once() {
    model(|| {
        let slab = Arc::new(Slab::new(Arc::new(HeapSlab::new(2, 8)), 0));
        let h = slab.alloc(Owner::Agent(1)).unwrap();
        let s2 = slab.clone();
        let t = thread::spawn(move || s2.release(h, Owner::Agent(1)).is_ok());
        let reclaimed = slab.reclaim(Owner::Agent(1));
        let released = t.join().unwrap();
        assert_eq!(reclaimed + released as usize, 1);
        assert_eq!(slab.free_count(), 2);
    });
}

/// A reader racing a writer that laps it: every message it keeps is whole (both words its
/// number) and newer than the one before, what it lost is counted, and it ends at the
/// writer's count.
#[test]
fn bus_publish_lag_resume_never_tears() {
    model(|| {
        let (mut tx, mut readers) = heap_bus(2, 1);
        let mut rx = readers.pop().unwrap();
        let writer = thread::spawn(move || {
            for i in 0..3u64 {
                let mut msg = i.to_le_bytes().to_vec();
                msg.extend_from_slice(&i.to_le_bytes());
                tx.publish(0, &msg).unwrap();
            }
        });
        let (mut last, mut seen, mut lost) = (None::<u64>, 0u64, 0u64);
        while rx.position() < 3 {
            match rx.try_recv() {
                Ok(m) => {
                    let a = u64::from_le_bytes(m.bytes[..8].try_into().unwrap());
                    let b = u64::from_le_bytes(m.bytes[8..].try_into().unwrap());
                    assert_eq!((a, b), (m.seq, m.seq), "torn");
                    assert!(last.is_none_or(|l| a > l), "out of order");
                    last = Some(a);
                    seen += 1;
                }
                Err(BusError::Lagged(n)) => lost += n,
                Err(BusError::Empty) => thread::yield_now(),
                Err(BusError::Corrupt) => panic!("corrupt"),
            }
        }
        writer.join().unwrap();
        assert_eq!(seen + lost, 3);
    });
}

/// A reader that sleeps as soon as there is nothing (no spinning) is woken by the publish.
#[test]
fn bus_sleeping_reader_is_never_left_asleep() {
    model(|| {
        let (mut tx, mut readers) = heap_bus(2, 1);
        let mut rx = readers.pop().unwrap();
        let writer = thread::spawn(move || {
            tx.publish(0, b"up").unwrap();
        });
        let m = rx.recv_with(0, None, |_, _, _| false).unwrap();
        assert_eq!(m.bytes, b"up");
        writer.join().unwrap();
    });
}

/// A reader racing two writes of a key: it sees nothing, or a whole value with its own
/// version, never a torn one, and never an older version after a newer.
#[test]
fn state_read_never_tears_against_a_write() {
    model(|| {
        let (mut w, r) = heap_kv(2);
        let writer = thread::spawn(move || {
            for v in 1..=2u64 {
                w.put(b"k", &[v as u8; 8], v).unwrap();
            }
        });
        let mut last = 0;
        for _ in 0..2 {
            if let Some((v, bytes)) = r.get(b"k").unwrap() {
                assert_eq!(bytes, [v as u8; 8], "torn");
                assert!(v >= last, "went back");
                last = v;
            }
        }
        writer.join().unwrap();
        assert_eq!(r.get(b"k").unwrap(), Some((2, vec![2; 8])));
    });
}
