//! Helpers shared by the integration tests: starting `agent-bin` peers with a watchdog.
#![allow(dead_code)]

use neuralflow_swarm::segment::Segment;
use neuralflow_swarm::spawn;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Upper bound on any single wait in these tests: a hang fails the test instead of the run.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// A child process killed on drop, so a failing test leaves nothing behind.
pub struct Agent {
    pub child: Child,
}

impl Agent {
    pub fn start(seg: &Segment, slot: u32, epoch: u32, mode: &str) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-bin"));
        let fds = seg.agent_fds(slot).expect("the slot's files");
        cmd.args(fds.to_args())
            .args(["--slot", &slot.to_string(), "--epoch", &epoch.to_string()])
            .args(["--peer", mode])
            .stdin(Stdio::null());
        spawn::inherit_fds(&mut cmd, &fds.all());
        Agent {
            child: cmd.spawn().expect("spawn agent-bin"),
        }
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn kill9(&mut self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    }

    /// Waits for exit, failing the test after the watchdog.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit within the watchdog"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
