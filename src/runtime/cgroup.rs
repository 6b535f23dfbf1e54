//! Per-agent cgroups: memory, CPU and pids limits, OOM attribution, kill, removal, and the
//! sweep of groups left behind by a supervisor that crashed.
//!
//! Both hierarchies are supported:
//!
//! - **v2** (unified): one directory per agent with `memory.max`, `memory.swap.max`,
//!   `memory.oom.group`, `cpu.max`, `pids.max`; OOM kills are counted in `memory.events`
//!   (`oom_kill`); `cgroup.kill` kills every process in the group.
//! - **v1**: one directory per agent in each of the `memory`, `cpu` and `pids` hierarchies,
//!   with `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes` where swap accounting
//!   exists), `cpu.cfs_quota_us`/`cpu.cfs_period_us`, `pids.max`; OOM kills are counted in
//!   `memory.oom_control` (`oom_kill`).
//!
//! The tree is `<root>/neuralflow-swarm/swarm-<pid>-<start time>-<n>/agent-<slot>-<epoch>`,
//! where `n` tells apart several supervisors embedded in one process.
//! The supervisor's pid and its start time (from `/proc/<pid>/stat`) name its run, so the
//! next supervisor can tell a live run from a dead one even after pid reuse, and sweep the
//! dead ones' groups ([`CgroupManager::sweep_stale`]).
//!
//! Agents join their group between fork and exec, before running any code of their own,
//! by writing `0` to each `cgroup.procs` ([`AgentCgroup::procs_files`]).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory under each hierarchy root that holds every run's groups.
pub const BASE: &str = "neuralflow-swarm";

/// Which cgroup hierarchy, and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2: the unified mount.
    V2 {
        /// Mount point, e.g. `/sys/fs/cgroup`.
        root: PathBuf,
    },
    /// cgroup v1: one mount per controller.
    V1 {
        /// The memory controller's mount.
        memory: PathBuf,
        /// The cpu controller's mount (often shared with cpuacct).
        cpu: PathBuf,
        /// The pids controller's mount.
        pids: PathBuf,
    },
}

impl Hierarchy {
    /// Finds the hierarchy this host uses: v2 if its unified mount has the memory, cpu and
    /// pids controllers available, else v1 if those controllers are mounted.
    pub fn detect() -> Option<Hierarchy> {
        Self::detect_in(Path::new("/sys/fs/cgroup"))
    }

    /// [`Hierarchy::detect`] under another mount root (for tests).
    pub fn detect_in(base: &Path) -> Option<Hierarchy> {
        for root in [base.to_path_buf(), base.join("unified")] {
            if let Ok(c) = std::fs::read_to_string(root.join("cgroup.controllers")) {
                let have: Vec<&str> = c.split_whitespace().collect();
                if ["memory", "cpu", "pids"].iter().all(|k| have.contains(k)) {
                    return Some(Hierarchy::V2 { root });
                }
            }
        }
        let memory = base.join("memory");
        let cpu = [base.join("cpu"), base.join("cpu,cpuacct")]
            .into_iter()
            .find(|p| p.join("cpu.cfs_quota_us").exists())?;
        let pids = base.join("pids");
        (memory.join("memory.limit_in_bytes").exists() && pids.join("cgroup.procs").exists())
            .then_some(Hierarchy::V1 { memory, cpu, pids })
    }

    fn roots(&self) -> Vec<PathBuf> {
        match self {
            Hierarchy::V2 { root } => vec![root.clone()],
            Hierarchy::V1 { memory, cpu, pids } => vec![memory.clone(), cpu.clone(), pids.clone()],
        }
    }

    /// "v1" or "v2".
    pub fn name(&self) -> &'static str {
        match self {
            Hierarchy::V2 { .. } => "v2",
            Hierarchy::V1 { .. } => "v1",
        }
    }
}

/// Resource limits of one agent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Memory limit in bytes (swap included where the kernel lets us say so).
    pub memory_bytes: Option<u64>,
    /// CPU quota in cores (1.5 = 150 ms per 100 ms period).
    pub cpu_cores: Option<f64>,
    /// Most processes and threads.
    pub pids: Option<u64>,
}

/// CFS period used for CPU quotas.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Cgroup trouble.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// No usable hierarchy on this host.
    #[error("no cgroup hierarchy with the memory, cpu and pids controllers was found")]
    NotFound,
    /// A file or directory operation failed.
    #[error("cgroup {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl CgroupError {
    /// Whether the failure means "not allowed here" (so running unisolated is an option).
    pub fn is_permission(&self) -> bool {
        match self {
            CgroupError::NotFound => true,
            CgroupError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOENT)
            ),
        }
    }
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> CgroupError + 'p {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_err("write", path))
}

pub use super::procfs::start_time as process_start_time;

/// The groups of one supervisor run.
#[derive(Debug)]
pub struct CgroupManager {
    hierarchy: Hierarchy,
    /// `swarm-<pid>-<start>`.
    run: String,
}

impl CgroupManager {
    /// Creates this run's directories (and the base above them) in every hierarchy root.
    pub fn create(hierarchy: Hierarchy) -> Result<CgroupManager, CgroupError> {
        let pid = std::process::id();
        let start = process_start_time(pid).unwrap_or(0);
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        // Relaxed: only uniqueness is needed.
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let m = CgroupManager {
            hierarchy,
            run: format!("swarm-{pid}-{start}-{n}"),
        };
        for root in m.hierarchy.roots() {
            let base = root.join(BASE);
            if !base.exists() {
                std::fs::create_dir(&base)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(io_err("mkdir", &base))?;
            }
            if let Hierarchy::V2 { .. } = m.hierarchy {
                // Controllers must be enabled on every level above an agent's group.
                enable_v2_controllers(&root)?;
                enable_v2_controllers(&base)?;
            }
            let run = base.join(&m.run);
            std::fs::create_dir_all(&run).map_err(io_err("mkdir", &run))?;
            if let Hierarchy::V2 { .. } = m.hierarchy {
                enable_v2_controllers(&run)?;
            }
        }
        Ok(m)
    }

    /// The hierarchy in use.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// This run's directory name.
    pub fn run_name(&self) -> &str {
        &self.run
    }

    /// Removes the groups of runs whose supervisor is gone (killing any process still in
    /// them). Returns the names of the runs swept.
    pub fn sweep_stale(&self) -> Vec<String> {
        let mut swept = Vec::new();
        let roots = self.hierarchy.roots();
        let Ok(entries) = std::fs::read_dir(roots[0].join(BASE)) else {
            return swept;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == self.run || !is_stale_run(&name) {
                continue;
            }
            for root in &roots {
                let run = root.join(BASE).join(&name);
                if let Ok(agents) = std::fs::read_dir(&run) {
                    for a in agents.flatten().filter(|a| a.path().is_dir()) {
                        let dir = a.path();
                        kill_group(&self.hierarchy, &dir);
                        let _ = remove_group_dir(&dir, Duration::from_secs(1));
                    }
                }
                let _ = remove_group_dir(&run, Duration::from_secs(1));
            }
            swept.push(name);
        }
        swept
    }

    /// Creates the group of one agent incarnation and writes its limits.
    pub fn create_agent(
        &self,
        slot: u32,
        epoch: u32,
        limits: &Limits,
    ) -> Result<AgentCgroup, CgroupError> {
        let name = format!("agent-{slot}-{epoch}");
        let dirs: Vec<PathBuf> = self
            .hierarchy
            .roots()
            .into_iter()
            .map(|r| r.join(BASE).join(&self.run).join(&name))
            .collect();
        for d in &dirs {
            match std::fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("mkdir", d)(e)),
            }
        }
        let group = AgentCgroup {
            hierarchy: self.hierarchy.clone(),
            dirs,
        };
        group.apply(limits)?;
        Ok(group)
    }

    /// Removes this run's (now empty) directories.
    pub fn remove(&self) {
        for root in self.hierarchy.roots() {
            let run = root.join(BASE).join(&self.run);
            if let Ok(agents) = std::fs::read_dir(&run) {
                for a in agents.flatten().filter(|a| a.path().is_dir()) {
                    kill_group(&self.hierarchy, &a.path());
                    let _ = remove_group_dir(&a.path(), Duration::from_secs(1));
                }
            }
            let _ = remove_group_dir(&run, Duration::from_secs(1));
        }
    }
}

fn enable_v2_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let missing: Vec<String> = ["memory", "cpu", "pids"]
        .iter()
        .filter(|c| !current.split_whitespace().any(|x| x == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(&path, &missing.join(" "))
}

/// Whether `swarm-<pid>-<start>[-<n>]` names a run whose supervisor is gone.
fn is_stale_run(name: &str) -> bool {
    let mut parts = name.strip_prefix("swarm-").unwrap_or("").splitn(3, '-');
    let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
        return false; // not ours to judge
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    process_start_time(pid) != Some(start)
}

fn pids_in(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn kill_group(h: &Hierarchy, dir: &Path) {
    if let Hierarchy::V2 { .. } = h {
        if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
    }
    for pid in pids_in(dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// `rmdir` a group, retrying while its last processes finish exiting. A directory laid out
/// like cgroupfs but on an ordinary file system (tests) has real files in it: remove those
/// only when `rmdir` reports the directory is not empty and it has no subdirectories.
fn remove_group_dir(dir: &Path, patience: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + patience;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                let entries: Vec<_> = std::fs::read_dir(dir)
                    .map_err(io_err("readdir", dir))?
                    .flatten()
                    .collect();
                if entries.iter().any(|e| e.path().is_dir()) {
                    return Err(io_err("rmdir", dir)(e));
                }
                for f in entries {
                    std::fs::remove_file(f.path()).map_err(io_err("unlink", &f.path()))?;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(io_err("rmdir", dir)(e)),
        }
    }
}

/// The group of one agent incarnation.
#[derive(Debug)]
pub struct AgentCgroup {
    hierarchy: Hierarchy,
    /// One directory (v2) or memory, cpu, pids (v1).
    dirs: Vec<PathBuf>,
}

impl AgentCgroup {
    fn dir(&self, controller: &str) -> &Path {
        match (&self.hierarchy, controller) {
            (Hierarchy::V2 { .. }, _) | (_, "memory") => &self.dirs[0],
            (_, "cpu") => &self.dirs[1],
            _ => &self.dirs[2],
        }
    }

    /// The group's directories.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn apply(&self, l: &Limits) -> Result<(), CgroupError> {
        let mem = self.dir("memory");
        let cpu = self.dir("cpu");
        let pids = self.dir("pids");
        match self.hierarchy {
            Hierarchy::V2 { .. } => {
                if let Some(b) = l.memory_bytes {
                    write(&mem.join("memory.max"), &b.to_string())?;
                    // Best effort: without swap accounting the file is absent.
                    let _ = std::fs::write(mem.join("memory.swap.max"), "0");
                    // One OOM kill takes the whole agent down, not one of its threads.
                    write(&mem.join("memory.oom.group"), "1")?;
                }
                if let Some(c) = l.cpu_cores {
                    let quota = ((c * CPU_PERIOD_US as f64) as u64).max(1000);
                    write(&cpu.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                if let Some(p) = l.pids {
                    write(&pids.join("pids.max"), &p.to_string())?;
                }
            }
            Hierarchy::V1 { .. } => {
                if let Some(b) = l.memory_bytes {
                    write(&mem.join("memory.limit_in_bytes"), &b.to_string())?;
                    let memsw = mem.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &b.to_string())?;
                    }
                }
                if let Some(c) = l.cpu_cores {
                    let quota = ((c * CPU_PERIOD_US as f64) as u64).max(1000);
                    write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                if let Some(p) = l.pids {
                    write(&pids.join("pids.max"), &p.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a child writes `0` into to join the group, as C strings
    /// ready for use between fork and exec.
    pub fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .map(|d| {
                CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).unwrap_or_default()
            })
            .collect()
    }

    /// OOM kills in this group so far.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.hierarchy {
            Hierarchy::V2 { .. } => ("memory.events", "oom_kill"),
            Hierarchy::V1 { .. } => ("memory.oom_control", "oom_kill"),
        };
        std::fs::read_to_string(self.dir("memory").join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
            })
            .unwrap_or(0)
    }

    /// Processes in the group.
    pub fn pids(&self) -> Vec<i32> {
        pids_in(&self.dirs[0])
    }

    /// Kills every process in the group.
    pub fn kill(&self) {
        for d in &self.dirs {
            kill_group(&self.hierarchy, d);
        }
    }

    /// Removes the group (its processes must have exited).
    pub fn remove(&self) -> Result<(), CgroupError> {
        for d in &self.dirs {
            remove_group_dir(d, Duration::from_secs(1))?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A directory laid out like a cgroup v2 mount.
    fn fake_v2() -> (tempdir::Dir, Hierarchy) {
        let d = tempdir::Dir::new("cg2");
        std::fs::write(
            d.0.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(d.0.join("cgroup.subtree_control"), "").unwrap();
        let h = Hierarchy::V2 { root: d.0.clone() };
        (d, h)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new(tag: &str) -> Dir {
                let p = std::env::temp_dir().join(format!(
                    "nfswarm-{tag}-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn detects_v2_when_controllers_are_available() {
        let (d, h) = fake_v2();
        assert_eq!(Hierarchy::detect_in(&d.0), Some(h));
    }

    #[test]
    fn v2_limits_land_in_the_right_files() {
        let (d, h) = fake_v2();
        let m = CgroupManager::create(h).unwrap();
        let run = d.0.join(BASE).join(m.run_name());
        assert!(std::fs::read_to_string(d.0.join("cgroup.subtree_control"))
            .unwrap()
            .contains("+memory"));
        let g = m
            .create_agent(
                3,
                2,
                &Limits {
                    memory_bytes: Some(64 << 20),
                    cpu_cores: Some(0.5),
                    pids: Some(32),
                },
            )
            .unwrap();
        let dir = run.join("agent-3-2");
        assert_eq!(g.dirs(), std::slice::from_ref(&dir));
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "32");
        // OOM attribution reads memory.events.
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(g.oom_kills(), 2);
        g.remove().unwrap();
        assert!(!dir.exists());
        m.remove();
        assert!(!run.exists());
    }

    #[test]
    fn sweep_removes_dead_runs_only() {
        let (d, h) = fake_v2();
        let m = CgroupManager::create(h.clone()).unwrap();
        let base = d.0.join(BASE);
        // A run of a process that cannot exist (pid 0 has no /proc entry), with an agent.
        let dead = base.join("swarm-0-12345");
        std::fs::create_dir_all(dead.join("agent-0-1")).unwrap();
        std::fs::write(dead.join("agent-0-1").join("cgroup.procs"), "").unwrap();
        // A foreign directory we must leave alone.
        std::fs::create_dir_all(base.join("not-ours")).unwrap();
        let swept = m.sweep_stale();
        assert_eq!(swept, ["swarm-0-12345"]);
        assert!(!dead.exists());
        assert!(base.join("not-ours").exists());
        assert!(base.join(m.run_name()).exists(), "our own run stays");
    }

    #[test]
    fn start_time_identifies_this_process() {
        let me = std::process::id();
        assert!(process_start_time(me).is_some());
        assert!(!is_stale_run(&format!(
            "swarm-{me}-{}",
            process_start_time(me).unwrap()
        )));
        assert!(is_stale_run(&format!("swarm-{me}-1")));
    }
}
