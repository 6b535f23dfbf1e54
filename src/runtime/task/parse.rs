//! `KIND[:ARG]` strings (`spin:10ms`, `alloc:64M`) and the sizes and durations in them.

use super::{kinds, TaskSpec};
use std::time::Duration;

/// A `KIND[:ARG]` string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad task {0:?}: {1}")]
pub struct ParseTaskError(pub String, pub String);

impl std::str::FromStr for TaskSpec {
    type Err = ParseTaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: String| ParseTaskError(s.to_string(), m);
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let need = |what: &str| {
            if arg.is_empty() {
                Err(err(format!("{name} needs :{what}")))
            } else {
                Ok(())
            }
        };
        Ok(match name {
            "noop" => TaskSpec::new(kinds::NOOP, 0),
            "crash" => TaskSpec::new(kinds::CRASH, 0),
            "hang" => TaskSpec::new(kinds::HANG, 0),
            "panic" => TaskSpec::new(kinds::PANIC, 0),
            "spin" | "sleep" | "busy" => {
                need("DURATION")?;
                let d = parse_duration(arg).map_err(err)?;
                let kind = match name {
                    "spin" => kinds::SPIN,
                    "busy" => kinds::BUSY,
                    _ => kinds::SLEEP,
                };
                TaskSpec::new(kind, d.as_nanos().min(u64::MAX as u128) as u64)
            }
            "echo" => {
                need("BYTES")?;
                TaskSpec::echo(parse_size(arg).map_err(err)? as usize, 0)
            }
            "alloc" => {
                need("SIZE")?;
                TaskSpec::new(kinds::ALLOC, parse_size(arg).map_err(err)?)
            }
            _ => return Err(err(
                "unknown kind (noop, spin:D, busy:D, sleep:D, echo:N, alloc:N, crash, hang, panic)"
                    .into(),
            )),
        })
    }
}

/// Splits `"1.5G"` into `(1.5, "G")`.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit))
}

/// Parses `250ms`, `1.5s`, `20us`, `100ns`, `2m`, `1h`, `7d`; a bare number is
/// milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (v, unit) = number_and_unit(s).ok_or_else(|| format!("bad duration {s:?}"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1e-3,
        "s" => 1.0,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        u => return Err(format!("bad duration unit {u:?}")),
    };
    let secs = v * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `4096`, `64K`, `64M`, `1G`, `512MiB`, `1.5G` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (v, unit) = number_and_unit(s).ok_or_else(|| format!("bad size {s:?}"))?;
    let unit = unit.trim().trim_end_matches("iB").trim_end_matches('B');
    let scale: f64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("bad size unit {u:?}")),
    };
    let bytes = v * scale;
    if !bytes.is_finite() || !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("size {s:?} out of range"));
    }
    Ok(bytes as u64)
}
