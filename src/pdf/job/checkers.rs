//! A small pool of threads that check generalists' replies (JSON with the pages kept
//! raw), so that with many agents the job thread, which every reply passes through, is
//! not the ceiling on pages/s. With few, the job thread checks them itself.
//!
//! Each reply goes in with a tag (the job's: its document and stage) and comes back with
//! it, checked or refused, in whatever order the threads finish.

use super::validate::check_reply;
use crate::pdf::wire::{CheckedReply, ReplyError};

/// Up to this many agents, replies are checked on the job thread.
pub const INLINE_AGENTS: usize = 8;

/// A reply checked, with its tag.
pub(super) type Checked<T> = (T, Result<CheckedReply, ReplyError>);

/// Threads that check replies tagged with `T`.
pub(super) struct Checkers<T: Send + 'static> {
    tx: Option<crossbeam_channel::Sender<(T, Vec<u8>)>>,
    rx: crossbeam_channel::Receiver<Checked<T>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Replies sent and not yet back.
    pub(super) outstanding: usize,
}

impl<T: Send + 'static> Checkers<T> {
    /// One thread per 8 agents, at most 4; none for 8 agents or fewer, whose replies are
    /// checked on the calling thread (as they are when no thread could be started). Up to
    /// there a handover costs more than it saves: two wake-ups a reply, against a check
    /// of a few microseconds a page that the job thread has time for.
    pub(super) fn start(agents: usize) -> Self {
        let (tx, jobs) = crossbeam_channel::unbounded::<(T, Vec<u8>)>();
        let (done, rx) = crossbeam_channel::unbounded::<Checked<T>>();
        let n = if agents <= INLINE_AGENTS {
            0
        } else {
            agents.div_ceil(8).min(4)
        };
        let threads = (0..n)
            .filter_map(|i| {
                let (jobs, done) = (jobs.clone(), done.clone());
                std::thread::Builder::new()
                    .name(format!("swarm-check-{i}"))
                    .spawn(move || {
                        for (tag, bytes) in jobs {
                            if done.send((tag, check_reply(bytes))).is_err() {
                                break;
                            }
                        }
                    })
                    .ok()
            })
            .collect::<Vec<_>>();
        Self {
            tx: (!threads.is_empty()).then_some(tx),
            rx,
            threads,
            outstanding: 0,
        }
    }

    /// Hands a reply over, or checks it here when there are no threads.
    pub(super) fn check(&mut self, tag: T, bytes: Vec<u8>) -> Option<Checked<T>> {
        let mut job = (tag, bytes);
        if let Some(tx) = &self.tx {
            match tx.send(job) {
                Ok(()) => {
                    self.outstanding += 1;
                    return None;
                }
                Err(crossbeam_channel::SendError(back)) => job = back,
            }
        }
        let (tag, bytes) = job;
        Some((tag, check_reply(bytes)))
    }

    /// A checked reply, if one is back.
    pub(super) fn try_take(&mut self) -> Option<Checked<T>> {
        let c = self.rx.try_recv().ok()?;
        self.outstanding -= 1;
        Some(c)
    }
}

impl<T: Send + 'static> Drop for Checkers<T> {
    fn drop(&mut self) {
        self.tx = None; // ends the threads' loops
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Replies come back from the checker threads with their tags, parsed or refused, and
    /// the count of those still out goes back to zero.
    #[test]
    fn checkers_parse_replies_off_the_job_thread() {
        let mut c = Checkers::<(usize, &str)>::start(16);
        assert_eq!(c.threads.len(), 2);
        let good = br#"{"page_count":2,"first":1,"pages":[{"number":1},{"number":2}]}"#;
        assert!(c.check((7, "doc"), good.to_vec()).is_none());
        assert!(c
            .check((8, "pages"), b"{\"page_count\":".to_vec())
            .is_none());
        let mut back = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while back.len() < 2 && Instant::now() < deadline {
            match c.try_take() {
                Some(x) => back.push(x),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(c.outstanding, 0);
        back.sort_by_key(|(tag, _)| *tag);
        let (tag, ok) = &back[0];
        assert_eq!(*tag, (7, "doc"));
        let reply = ok.as_ref().expect("a valid reply");
        assert_eq!(reply.page_count, 2);
        assert_eq!(reply.pages().nth(1), Some(&br#"{"number":2}"#[..]));
        let (tag, bad) = &back[1];
        assert_eq!(*tag, (8, "pages"));
        assert!(matches!(bad, Err(ReplyError::Json(_))));
    }
}
