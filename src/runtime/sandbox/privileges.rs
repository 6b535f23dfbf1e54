//! Privileges a sandboxed agent gives up: being traced, gaining privileges, capabilities,
//! and (without the system-call filter) the host's network.

/// `PR_SET_DUMPABLE` 0: no process of the same uid may `ptrace` this one or read its
/// memory through `/proc`, and it writes no core file.
pub(super) fn not_dumpable() -> Result<(), String> {
    prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")
}

/// `PR_SET_NO_NEW_PRIVS`: no `execve` can raise privileges (set-uid files, file
/// capabilities). Landlock and an unprivileged seccomp filter need it.
pub(super) fn no_new_privs() -> Result<(), String> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
}

fn prctl(option: libc::c_int, value: libc::c_ulong, name: &str) -> Result<(), String> {
    // SAFETY: these options take integer arguments only and touch no memory of ours.
    let r = unsafe {
        libc::prctl(
            option,
            value,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r != 0 {
        return Err(format!("{name}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `CAP_SETPCAP`'s number (linux/capability.h).
const CAP_SETPCAP: u32 = 8;

/// Drops every capability: the bounding set first (which needs `CAP_SETPCAP`, so only
/// while we still have it; a process without it has nothing to drop there that could be
/// regained, since `no_new_privs` holds), the ambient set, then the effective, permitted
/// and inheritable sets. Checked afterwards from `/proc/self/status`.
pub(super) fn drop_capabilities() -> Result<(), String> {
    let has_setpcap = capabilities()?.effective & (1 << CAP_SETPCAP) != 0;
    if has_setpcap {
        // Up to the first number the kernel does not know (EINVAL).
        for cap in 0..64 {
            // SAFETY: integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                    break;
                }
                return Err(format!("PR_CAPBSET_DROP({cap}): {e}"));
            }
        }
    }
    // SAFETY: integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(format!(
            "PR_CAP_AMBIENT_CLEAR_ALL: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Version 3 sets take two records: all zero.
    capability_call(libc::SYS_capset, &mut [CapData::default(); 2], "capset")?;
    match capabilities()? {
        CapSets {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        } => Ok(()),
        left => Err(format!("capabilities remain after dropping them: {left:?}")),
    }
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, in two records.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `capget` (fills `data`) or `capset` (reads it) on this process, version 3.
fn capability_call(nr: libc::c_long, data: &mut [CapData; 2], name: &str) -> Result<(), String> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    // SAFETY: both calls take a header and, for version 3, two data records; `header`
    // and `data` are live for the call and laid out as the kernel's structs (`#[repr(C)]`),
    // and `data` has room for the two records `capget` writes.
    let r = unsafe { libc::syscall(nr, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    if r != 0 {
        return Err(format!("{name}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A process's three capability sets.
#[derive(Debug, PartialEq, Eq)]
struct CapSets {
    effective: u64,
    permitted: u64,
    inheritable: u64,
}

/// This process's capabilities, from `capget` (`/proc` may be out of reach already).
fn capabilities() -> Result<CapSets, String> {
    let mut data = [CapData::default(); 2];
    capability_call(libc::SYS_capget, &mut data, "capget")?;
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok(CapSets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

/// A network namespace of our own (no interface but a down loopback): used when the
/// filter, which refuses sockets, is not in force. Needs `CAP_SYS_ADMIN`.
pub(super) fn own_network_namespace() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("no system-call filter, and no network namespace of its own: {e}"))
}
