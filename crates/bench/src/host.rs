//! What the benchmark asks of the operating system: resident memory, dropping files from the
//! page cache, and facts about the host that belong beside every number.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> Result<u64> {
    let statm = fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("parsing /proc/self/statm")?;
    Ok(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// Writes back and then drops from the page cache every regular file under `dir`, so that
/// the next read of them comes from the disk. Returns the number of files dropped.
///
/// Dirty pages cannot be dropped, hence the `fdatasync` first. This leaves the cache of other
/// processes alone, unlike writing to `/proc/sys/vm/drop_caches`, and needs no privileges.
pub fn drop_from_cache(dir: &Path) -> Result<u64> {
    let mut dropped = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                drop_file(&entry.path()).with_context(|| {
                    format!("dropping {} from the page cache", entry.path().display())
                })?;
                dropped += 1;
            }
        }
    }
    Ok(dropped)
}

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

/// `fdatasync` then `posix_fadvise(DONTNEED)` of one file.
pub fn drop_file(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    file.sync_data()?;
    // SAFETY: the descriptor is open for the duration of the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Fraction (0–100) of a file's pages that are in the page cache, by `mincore` on a mapping.
/// A check that [`drop_from_cache`] worked on this file system.
pub fn resident_pct(path: &Path) -> Result<f64> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len() as usize;
    if len == 0 {
        return Ok(0.0);
    }
    let page = page_size() as usize;
    // SAFETY: a fresh private read-only mapping of an open file, unmapped before returning;
    // mincore writes one byte per page into a vector of exactly that many bytes.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).context("mapping a file for mincore");
        }
        let mut vec = vec![0u8; len.div_ceil(page)];
        let rc = libc::mincore(addr, len, vec.as_mut_ptr());
        let err = io::Error::last_os_error();
        libc::munmap(addr, len);
        if rc != 0 {
            return Err(err).context("mincore");
        }
        let resident = vec.iter().filter(|b| **b & 1 == 1).count();
        Ok(100.0 * resident as f64 / vec.len() as f64)
    }
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
