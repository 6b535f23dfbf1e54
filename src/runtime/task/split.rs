//! A task that splits itself while it runs: its handler returns subtasks and a merge
//! step ([`crate::agent::TaskContext::split`]) instead of an output. The supervisor runs
//! the subtasks (which may split in turn), then the merge step with their outputs as its
//! inputs, in order; the merge's outcome is the task's.
//!
//! On the wire (the completion's payload, status [`super::status::SPLIT`]), little-endian:
//! `merge kind u32, merge arg u64, count u32`, then per subtask `kind u32, arg u64,
//! length u64` and that many input bytes. An agent writes it, so the supervisor decodes it
//! with every bound checked.

use super::{TaskError, TaskKind};

/// Most subtasks one split may have.
pub const MAX_SUBTASKS: usize = 4096;
/// Most levels of splits below the task first submitted.
pub const MAX_SPLIT_DEPTH: u32 = 32;
/// Most subtasks in all below one task first submitted (so that a handler, or an agent
/// taken over, cannot multiply work without bound).
pub const MAX_SPLIT_TASKS: usize = 1 << 16;

/// One subtask: a kind, its argument and its input bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTask {
    /// Its kind.
    pub kind: TaskKind,
    /// Its argument.
    pub arg: u64,
    /// Its input.
    pub input: Vec<u8>,
}

impl SubTask {
    /// A subtask of `kind` with `arg`, on `input`.
    pub fn new(kind: TaskKind, arg: u64, input: Vec<u8>) -> Self {
        Self { kind, arg, input }
    }
}

/// What a splitting handler returns: the subtasks and the merge step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The subtasks, whose outputs are the merge's inputs in this order.
    pub subtasks: Vec<SubTask>,
    /// The merge step's kind.
    pub merge: TaskKind,
    /// Its argument.
    pub merge_arg: u64,
}

impl Split {
    /// The completion payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.merge.get().to_le_bytes());
        out.extend_from_slice(&self.merge_arg.to_le_bytes());
        out.extend_from_slice(&(self.subtasks.len() as u32).to_le_bytes());
        for s in &self.subtasks {
            out.extend_from_slice(&s.kind.get().to_le_bytes());
            out.extend_from_slice(&s.arg.to_le_bytes());
            out.extend_from_slice(&(s.input.len() as u64).to_le_bytes());
            out.extend_from_slice(&s.input);
        }
        out
    }

    /// Decodes a completion payload, refusing anything that does not add up.
    pub fn decode(bytes: &[u8]) -> Result<Split, TaskError> {
        let bad = |why: String| TaskError::new("bad_split", why);
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], TaskError> {
            let end = at
                .checked_add(n)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| bad(format!("cut short at byte {at}")))?;
            let part = &bytes[at..end];
            at = end;
            Ok(part)
        };
        let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let merge = TaskKind(u32_of(take(4)?));
        let merge_arg = u64_of(take(8)?);
        let count = u32_of(take(4)?) as usize;
        if count > MAX_SUBTASKS {
            return Err(bad(format!("{count} subtasks, more than {MAX_SUBTASKS}")));
        }
        let mut subtasks = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = TaskKind(u32_of(take(4)?));
            let arg = u64_of(take(8)?);
            let len = usize::try_from(u64_of(take(8)?)).map_err(|e| bad(e.to_string()))?;
            let input = take(len)?.to_vec();
            subtasks.push(SubTask { kind, arg, input });
        }
        if at != bytes.len() {
            return Err(bad(format!(
                "{} bytes past the last subtask",
                bytes.len() - at
            )));
        }
        Ok(Split {
            subtasks,
            merge,
            merge_arg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_round_trips_and_a_cut_or_padded_one_is_refused() {
        let s = Split {
            subtasks: vec![
                SubTask::new(TaskKind(7), 1, b"left".to_vec()),
                SubTask::new(TaskKind(7), 2, Vec::new()),
            ],
            merge: TaskKind(8),
            merge_arg: 9,
        };
        let wire = s.encode();
        assert_eq!(Split::decode(&wire).unwrap(), s);
        for cut in 0..wire.len() {
            assert!(Split::decode(&wire[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = wire.clone();
        padded.push(0);
        assert!(Split::decode(&padded).is_err());
        let mut huge = wire[..12].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Split::decode(&huge).is_err());
        let mut long = wire[..16].to_vec();
        long.extend_from_slice(&7u32.to_le_bytes());
        long.extend_from_slice(&0u64.to_le_bytes());
        long.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Split::decode(&long).is_err());
    }
}
