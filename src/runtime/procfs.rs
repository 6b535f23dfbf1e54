//! What `/proc` tells of a process: its start time, CPU time, resident memory and open
//! descriptors. Each answer is `None` when the process is gone or the file unreadable.

/// The fields of `/proc/<pid>/stat` from the third on (the command name, field 2, is in
/// parentheses and may hold spaces, so the split starts past its last `)`).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    // Field 3 is the state, a letter: 0 stands in for it, so field n is at n - 3.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// The start time of a process (clock ticks since boot), the stable half of its identity.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(22 - 3).copied()
}

/// CPU seconds a process has used, user and system, its threads included.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    let ticks = f.get(14 - 3)? + f.get(15 - 3)?;
    // SAFETY: sysconf reads a configuration value; it has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// A process's resident set (`VmRSS`) and its anonymous part (`RssAnon`), in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("RssAnon:").unwrap_or(0)))
}

/// The descriptors a process has open.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_described() {
        let me = std::process::id();
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert!(cpu_seconds(me).is_some());
        let (rss, anon) = rss_kib(me).unwrap();
        assert!(rss > 0 && anon <= rss);
        let before = open_fds(me).unwrap();
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(open_fds(me).unwrap(), before + 1);
        drop(f);
        assert_eq!(start_time(u32::MAX), None);
    }
}
