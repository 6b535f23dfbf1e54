//! Hosts for tests, on one machine: each a network namespace of its own with one
//! interface, `eth0`, joined by a veth pair to a bridge that lives in a namespace of its
//! own too (the hub). Only the test's namespaces and their private addresses are used;
//! the machine's own network is never touched. Partitions drop packets with nftables
//! inside a host's namespace. Needs root, `ip` and `nft`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// The hosts' subnet (a /24): host `k` (from 0) is `10.201.7.(k + 1)`.
const SUBNET: &str = "10.201.7";

/// Why hosts cannot be made here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("network namespaces need root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!(
                "`{tool}` is missing (apt-get install iproute2 nftables)"
            ));
        }
    }
    None
}

/// The hosts, and the processes started in them (killed when this is dropped, before
/// the namespaces are deleted).
pub struct Net {
    prefix: String,
    hosts: Vec<String>,
    /// Each host's namespace, open (entered by the processes started in it).
    ns: HashMap<String, File>,
    procs: Vec<(String, Child)>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// Hosts named `hosts`, each on the bridge with its address.
    pub fn new(hosts: &[&str]) -> Net {
        let prefix = format!("swt{}", std::process::id());
        let mut net = Net {
            prefix,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ns: HashMap::new(),
            procs: Vec::new(),
        };
        let hub = net.ns_name("hub");
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for (k, h) in hosts.iter().enumerate() {
            let name = net.ns_name(h);
            ip(&["netns", "add", &name]);
            let port = format!("v{k}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &name,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"]);
            let addr = format!("{}/24", net.addr(h));
            ip(&["-n", &name, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &name, "link", "set", "eth0", "up"]);
            ip(&["-n", &name, "link", "set", "lo", "up"]);
            let f = File::open(format!("/run/netns/{name}")).expect("the namespace's file");
            net.ns.insert(h.to_string(), f);
        }
        net
    }

    fn ns_name(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Host `host`'s address.
    pub fn addr(&self, host: &str) -> String {
        let k = self
            .hosts
            .iter()
            .position(|h| h == host)
            .unwrap_or_else(|| panic!("no host {host}"));
        format!("{SUBNET}.{}", k + 1)
    }

    /// `cmd`, to be run in `host`'s network namespace (and nothing else of it changed).
    pub fn enter<'a>(&self, host: &str, cmd: &'a mut Command) -> &'a mut Command {
        // A descriptor of the command's own (close-on-exec), open as long as it is.
        let ns: std::os::fd::OwnedFd = self.ns[host]
            .try_clone()
            .expect("a copy of the namespace's descriptor")
            .into();
        // SAFETY: runs in the child between fork and exec, where only async-signal-safe
        // calls may be made: setns is one system call, on a descriptor the closure owns.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
        cmd
    }

    /// Starts `cmd` in `host` as process `name` (a name of the test's, for
    /// [`Net::child`]); a process of that name before is forgotten (it should be gone).
    pub fn spawn(&mut self, name: &str, host: &str, mut cmd: Command) {
        let child = self
            .enter(host, &mut cmd)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} in {host}: {e}"));
        self.procs.retain(|(n, _)| n != name);
        self.procs.push((name.to_string(), child));
    }

    /// Process `name`.
    pub fn child(&mut self, name: &str) -> &mut Child {
        self.procs
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// Process `name`, no longer killed when this is dropped.
    pub fn take(&mut self, name: &str) -> Child {
        let k = self
            .procs
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        self.procs.remove(k).1
    }

    /// Sends `sig` to process `name`.
    pub fn signal(&mut self, name: &str, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child(name).id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap_or_else(|e| panic!("{sig} to {name}: {e}"));
    }

    fn nft(&self, host: &str, script: &str) {
        use std::io::Write;
        let mut cmd = Command::new("nft");
        cmd.args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped());
        let mut c = self.enter(host, &mut cmd).spawn().expect("nft runs");
        c.stdin
            .take()
            .expect("nft's stdin")
            .write_all(script.as_bytes())
            .expect("nft's rules");
        let out = c.wait_with_output().expect("nft's status");
        assert!(
            out.status.success(),
            "nft in {host}: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Drops every packet between `host` and `peers` (all other hosts if empty), both
    /// ways, from inside `host`: the link stays up and nothing is refused, packets are
    /// just lost, as in a real partition.
    pub fn cut(&self, host: &str, peers: &[&str]) {
        let set: Vec<String> = if peers.is_empty() {
            self.hosts
                .iter()
                .filter(|h| *h != host)
                .map(|h| self.addr(h))
                .collect()
        } else {
            peers.iter().map(|h| self.addr(h)).collect()
        };
        let set = set.join(", ");
        self.nft(
            host,
            &format!(
                "table inet swarm_cut {{\n\
                 chain in {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n\
                 chain out {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n\
                 }}\n"
            ),
        );
    }

    /// Ends `host`'s partition.
    pub fn heal(&self, host: &str) {
        self.nft(host, "delete table inet swarm_cut\n");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        for h in self.hosts.iter().map(String::as_str).chain(["hub"]) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns_name(h)])
                .status();
        }
    }
}
