//! Tasks as the supervisor and agents see them: kinds, specs, completion statuses,
//! outcomes, handler errors, and the parsing of `KIND[:ARG]` strings (`spin:10ms`,
//! `alloc:64M`).

mod error;
mod outcome;
mod parse;
mod spec;
mod split;
mod wire;

pub use error::TaskError;
pub use outcome::{DeathCause, Failure, Outcome};
pub use parse::{parse_duration, parse_size, ParseTaskError};
pub(crate) use spec::ReleaseHeld;
pub use spec::{echo_pattern, Held, Input, Output, SpreadKey, TaskSpec};
pub use split::{Split, SubTask, MAX_SPLIT_DEPTH, MAX_SPLIT_TASKS, MAX_SUBTASKS};
pub use wire::{flags, kinds, status, TaskId, TaskKind, ECHO_XOR};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_specs() {
        assert_eq!("noop".parse::<TaskSpec>().unwrap().kind, kinds::NOOP);
        let s: TaskSpec = "spin:10ms".parse().unwrap();
        assert_eq!((s.kind, s.arg), (kinds::SPIN, 10_000_000));
        assert_eq!("sleep:1.5s".parse::<TaskSpec>().unwrap().arg, 1_500_000_000);
        assert_eq!("alloc:64M".parse::<TaskSpec>().unwrap().arg, 64 << 20);
        assert_eq!("echo:4K".parse::<TaskSpec>().unwrap().bytes().len(), 4096);
        assert!("spin".parse::<TaskSpec>().is_err());
        assert_eq!("busy:2s".parse::<TaskSpec>().unwrap().kind, kinds::BUSY);
        assert_eq!("panic".parse::<TaskSpec>().unwrap().kind, kinds::PANIC);
        assert!("bogus:1".parse::<TaskSpec>().is_err());
        assert!("sleep:5parsecs".parse::<TaskSpec>().is_err());
    }

    #[test]
    fn task_errors_cross_as_they_are_and_junk_is_contained() {
        let e = TaskError::new("not_found", "no such file");
        assert_eq!(TaskError::decode(&e.encode()), e);
        // A kind that may not cross is sent as `error`, the message kept.
        let odd = TaskError::new("Bad Kind!", "m");
        assert_eq!(
            TaskError::decode(&odd.encode()),
            TaskError::new("error", "m")
        );
        for junk in [&b""[..], b"\xff", b"\x05ab", b"\x02A!rest"] {
            let d = TaskError::decode(junk);
            assert_eq!(d.kind, "error");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_duration("200us").unwrap(), Duration::from_micros(200));
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_duration("2d").unwrap(),
            Duration::from_secs(2 * 86400)
        );
    }

    #[test]
    fn blame() {
        assert!(DeathCause::Signal(libc::SIGABRT).blames_task());
        assert!(!DeathCause::Signal(libc::SIGKILL).blames_task());
        assert!(DeathCause::Oom.blames_task());
        assert!(DeathCause::Exit(101).blames_task());
        assert!(DeathCause::Protocol.blames_task());
        assert!(DeathCause::Sandbox.blames_task());
        assert!(!DeathCause::Supervisor.blames_task());
    }
}
