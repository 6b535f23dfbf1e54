//! The threads' wake-ups: the reaper, which watches one pidfd per agent and reports exits,
//! and the waker, which reaches the reactor wherever it sleeps.

use super::error::Error;
use crate::shm::segment::Segment;
use parking_lot::Mutex;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The thread that watches agents' pidfds.
pub(super) struct Reaper {
    pub(super) tx: crossbeam_channel::Sender<ReaperMsg>,
    pub(super) wake: OwnedFd,
    pub(super) thread: Mutex<Option<JoinHandle<()>>>,
}

pub(super) enum ReaperMsg {
    Watch(OwnedFd, u32, u32),
    Quit,
}

impl Reaper {
    pub(super) fn start(
        exits: crossbeam_channel::Sender<(u32, u32)>,
        waker: Waker,
    ) -> Result<Reaper, Error> {
        // SAFETY: eventfd with valid flags; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(Error::Os("eventfd", std::io::Error::last_os_error()));
        }
        // SAFETY: `efd` is a fresh descriptor we own.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let wake_raw = wake.as_raw_fd();
        let (tx, rx) = crossbeam_channel::unbounded::<ReaperMsg>();
        let thread = std::thread::Builder::new()
            .name("swarm-reaper".into())
            .spawn(move || reaper_loop(wake_raw, rx, exits, waker))
            .map_err(|e| Error::Os("spawn reaper thread", e))?;
        Ok(Reaper {
            tx,
            wake,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(super) fn poke(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(super) fn watch(&self, pid: u32, slot: u32, epoch: u32) -> std::io::Result<()> {
        let fd = crate::runtime::spawn::pidfd_open(pid)?;
        let _ = self.tx.send(ReaperMsg::Watch(fd, slot, epoch));
        self.poke();
        Ok(())
    }

    pub(super) fn stop(&self) {
        let _ = self.tx.send(ReaperMsg::Quit);
        self.poke();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

pub(super) fn reaper_loop(
    wake: RawFd,
    rx: crossbeam_channel::Receiver<ReaperMsg>,
    exits: crossbeam_channel::Sender<(u32, u32)>,
    waker: Waker,
) {
    let mut watched: Vec<(OwnedFd, u32, u32)> = Vec::new();
    loop {
        let mut fds: Vec<libc::pollfd> = std::iter::once(wake)
            .chain(watched.iter().map(|(fd, _, _)| fd.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            let mut b = [0u8; 8];
            // SAFETY: reads at most 8 bytes into `b` from our eventfd.
            unsafe { libc::read(wake, b.as_mut_ptr().cast(), 8) };
            while let Ok(m) = rx.try_recv() {
                match m {
                    ReaperMsg::Watch(fd, slot, epoch) => watched.push((fd, slot, epoch)),
                    ReaperMsg::Quit => return,
                }
            }
        }
        let mut k = 0;
        for p in &fds[1..] {
            if p.revents != 0 {
                let (_, slot, epoch) = watched.remove(k);
                let _ = exits.send((slot, epoch));
            } else {
                k += 1;
            }
        }
        if fds[1..].iter().any(|p| p.revents != 0) {
            waker.wake();
        }
    }
}

/// Wakes the reactor wherever it sleeps: on the doorbell futex or parked.
#[derive(Clone)]
pub(super) struct Waker {
    pub(super) seg: Arc<Segment>,
    pub(super) reactor: Arc<Mutex<Option<std::thread::Thread>>>,
}

impl Waker {
    pub(super) fn wake(&self) {
        self.seg.doorbell().wake();
        if let Some(t) = self.reactor.lock().as_ref() {
            t.unpark();
        }
    }
}
