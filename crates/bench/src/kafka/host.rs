//! Facts about the host that belong beside every number, and writing back the page cache
//! between phases.
//!
//! The same facts, under the same JSON names, as `strata bench storage` reports (its
//! `storage/os.rs`, private to that module, holds the original). Once the storage bench
//! exposes them, this file should go.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Writes back every dirty page of the file system holding `dir` (`syncfs`), so that a phase
/// does not pay for writeback the previous phase (or run) left behind.
pub fn settle(dir: &Path) -> Result<()> {
    let d = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error()).context("syncfs");
    }
    Ok(())
}

/// Facts about the machine, reported with every run because numbers mean little without them.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// CPUs this process may run on.
    pub cores: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu: String,
    /// File system type of the data directory (ext4, xfs, tmpfs, …).
    pub fs: String,
    /// Soft limit on open descriptors (`ulimit -n`).
    pub nofile: u64,
}

impl Host {
    /// Gathers the facts; `dir` is where the data goes.
    pub fn probe(dir: &Path) -> Host {
        Host {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned()),
            cpu: fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_else(|| "unknown".into()),
            fs: fs_type(dir),
            nofile: nofile_limit(),
        }
    }
}

/// The soft limit on open descriptors (`ulimit -n`), 0 if unknown.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    }
}

fn fs_type(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: statfs writes only into the zeroed struct; the path is a valid C string.
    let magic = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return "unknown".into();
        }
        st.f_type as u64
    };
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlay".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        other => format!("0x{other:x}"),
    }
}
