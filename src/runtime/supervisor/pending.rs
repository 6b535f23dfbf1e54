//! Tasks waiting for an agent, in the order they are to be dispatched.
//!
//! Each task has a *key*: the time it was submitted, less its priority times the aging
//! step (`SupervisorBuilder::priority_aging`). The lowest key goes first, equal keys in
//! submission order. So a higher priority goes first, and equal ones in the order they
//! came; and a task is never passed by one submitted more than `(p' − p) × aging` after
//! it, where `p'` is the other's priority and `p` its own: that is the aging bound, and
//! why a low-priority task still runs under a flood of higher ones. The key is fixed at
//! submission (waiting raises a task's standing by itself, as time passes against newer
//! keys), so nothing is rescanned as priorities age.
//!
//! A retried task goes to the front, ahead of every key: it has waited already.

use std::collections::{BTreeSet, VecDeque};

/// The pending tasks, ordered by key then id.
///
/// Most tasks come in key order (equal priorities, keys rising with time) or go to the
/// front (retries): those stay in a plain queue, two pointer moves each way. Only a task
/// whose key falls between the queue's ends goes to an ordered set; the front is the lesser
/// of the two fronts.
#[derive(Debug, Default)]
pub(super) struct Pending {
    lane: VecDeque<(i64, u64)>,
    tree: BTreeSet<(i64, u64)>,
    /// Keys for the front, falling: each retried task goes ahead of the one before.
    front: i64,
}

impl Pending {
    /// The key of a task submitted `submitted_ns` after the supervisor started, with
    /// `priority`, aging `aging_ns` per level.
    pub(super) fn key(submitted_ns: u64, priority: i32, aging_ns: u64) -> i64 {
        let at = i64::try_from(submitted_ns).unwrap_or(i64::MAX);
        let lift = i64::from(priority).saturating_mul(i64::try_from(aging_ns).unwrap_or(i64::MAX));
        // Keys at or below `i64::MIN / 2` are the front's.
        at.saturating_sub(lift).max(i64::MIN / 2 + 1)
    }

    /// Adds a task with its key (a task not already pending).
    pub(super) fn push(&mut self, id: u64, key: i64) {
        let item = (key, id);
        match (self.lane.front(), self.lane.back()) {
            (_, None) => self.lane.push_back(item),
            (_, Some(&back)) if item > back => self.lane.push_back(item),
            (Some(&front), _) if item < front => self.lane.push_front(item),
            _ => {
                self.tree.insert(item);
            }
        }
    }

    /// Adds a task ahead of every other (a retry).
    pub(super) fn push_front(&mut self, id: u64) {
        if self.front == 0 {
            self.front = i64::MIN / 2;
        }
        self.front -= 1;
        self.push(id, self.front);
    }

    fn first(&self) -> Option<((i64, u64), bool)> {
        match (self.lane.front(), self.tree.first()) {
            (Some(&l), Some(&t)) => Some(if l < t { (l, true) } else { (t, false) }),
            (Some(&l), None) => Some((l, true)),
            (None, Some(&t)) => Some((t, false)),
            (None, None) => None,
        }
    }

    /// The next task to dispatch.
    pub(super) fn front(&self) -> Option<u64> {
        self.first().map(|((_, id), _)| id)
    }

    /// Takes the next task to dispatch.
    pub(super) fn pop_front(&mut self) -> Option<u64> {
        self.pop_entry().map(|(_, id)| id)
    }

    /// Takes the next task to dispatch with its key, to put it back as it was.
    pub(super) fn pop_entry(&mut self) -> Option<(i64, u64)> {
        let (item, in_lane) = self.first()?;
        if in_lane {
            self.lane.pop_front();
        } else {
            self.tree.remove(&item);
        }
        Some(item)
    }

    /// Takes `id` out; whether it was pending. A scan: for cancels and specialists, whose
    /// queues are short.
    pub(super) fn remove(&mut self, id: u64) -> bool {
        if let Some(pos) = self.lane.iter().position(|&(_, i)| i == id) {
            self.lane.remove(pos);
            return true;
        }
        match self.tree.iter().find(|&&(_, i)| i == id).copied() {
            Some(item) => self.tree.remove(&item),
            None => false,
        }
    }

    /// The pending tasks in dispatch order.
    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let mut lane = self.lane.iter().peekable();
        let mut tree = self.tree.iter().peekable();
        std::iter::from_fn(move || {
            let next = match (lane.peek(), tree.peek()) {
                (Some(l), Some(t)) if l < t => lane.next(),
                (Some(_), Some(_)) | (None, Some(_)) => tree.next(),
                (Some(_), None) => lane.next(),
                (None, None) => None,
            };
            next.map(|&(_, id)| id)
        })
    }

    /// How many are pending.
    pub(super) fn len(&self) -> usize {
        self.lane.len() + self.tree.len()
    }

    /// Whether none is.
    pub(super) fn is_empty(&self) -> bool {
        self.lane.is_empty() && self.tree.is_empty()
    }

    /// Lets every pending task go.
    pub(super) fn clear(&mut self) {
        self.lane.clear();
        self.tree.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGING: u64 = 1_000_000; // 1 ms a level

    #[test]
    fn higher_priority_first_equal_ones_in_submission_order() {
        let mut p = Pending::default();
        p.push(1, Pending::key(10, 0, AGING));
        p.push(2, Pending::key(20, 0, AGING));
        p.push(3, Pending::key(30, 2, AGING));
        p.push(4, Pending::key(40, 2, AGING));
        assert_eq!(p.iter().collect::<Vec<_>>(), [3, 4, 1, 2]);
        p.push_front(9);
        p.push_front(8);
        assert_eq!(p.pop_front(), Some(8));
        assert_eq!(p.pop_front(), Some(9));
        assert!(p.remove(4) && !p.remove(4));
        assert_eq!(p.iter().collect::<Vec<_>>(), [3, 1, 2]);
        assert_eq!(p.len(), 3);
    }

    /// The aging bound: a task is passed by higher ones submitted less than the difference
    /// in priority times the aging step after it, and by none submitted later than that.
    #[test]
    fn a_low_task_is_passed_only_within_the_aging_bound() {
        let mut p = Pending::default();
        p.push(0, Pending::key(0, 0, AGING));
        // A flood of priority-1 tasks, one every 0.1 ms for 3 ms.
        for i in 1..=30u64 {
            p.push(i, Pending::key(i * 100_000, 1, AGING));
        }
        let order: Vec<u64> = p.iter().collect();
        let at = order.iter().position(|&id| id == 0).unwrap();
        // Passed by those submitted within 1 ms after it (ids 1..=9; id 10 ties at the
        // bound and goes after it, by id), not by any later.
        assert_eq!(&order[..at], (1..=9).collect::<Vec<_>>());
        assert!(Pending::key(u64::MAX, i32::MIN, u64::MAX) > i64::MIN / 2);
        assert!(Pending::key(0, i32::MAX, u64::MAX) > i64::MIN / 2);
    }

    /// Against a sorted list, under pushes in and out of order, retries, pops and removes.
    #[test]
    fn the_two_lanes_keep_one_order() {
        let mut p = Pending::default();
        let mut model: Vec<(i64, u64)> = Vec::new();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut front = i64::MIN / 2;
        for id in 0..5000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 10 {
                0 => {
                    p.push_front(id);
                    front -= 1;
                    model.push((front, id));
                }
                1 | 2 => {
                    model.sort();
                    let want = (!model.is_empty()).then(|| model.remove(0).1);
                    assert_eq!(p.pop_front(), want);
                }
                3 if !model.is_empty() => {
                    let victim = model[(x >> 8) as usize % model.len()];
                    model.retain(|&m| m != victim);
                    assert!(p.remove(victim.1));
                }
                _ => {
                    // Mostly rising keys, some out of order.
                    let key = if x % 7 == 0 {
                        (x >> 20) as i64 % 1000
                    } else {
                        id as i64 * 10
                    };
                    p.push(id, key);
                    model.push((key, id));
                }
            }
            model.sort();
            assert_eq!(p.len(), model.len());
            assert_eq!(p.front(), model.first().map(|m| m.1));
        }
        assert!(p.iter().eq(model.iter().map(|m| m.1)));
    }
}
