//! The run's own data directory: created fresh, removed at the end unless `--keep`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A directory that no earlier run or other process wrote to. Removed on drop unless kept, so
/// a failed run cleans up too.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    keep: bool,
}

impl DataDir {
    /// Creates `<parent>/strata-bench-data-<pid>` (with a `-<n>` suffix if a run in this
    /// process already used that name). `parent` defaults to the current folder.
    pub fn create(parent: Option<&Path>, keep: bool) -> Result<DataDir> {
        let parent = parent.unwrap_or(Path::new("."));
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let pid = std::process::id();
        for n in 0..1000 {
            let name = match n {
                0 => format!("strata-bench-data-{pid}"),
                n => format!("strata-bench-data-{pid}-{n}"),
            };
            let path = parent.join(name);
            match fs::create_dir(&path) {
                Ok(()) => {
                    let path = path
                        .canonicalize()
                        .with_context(|| format!("resolving {}", path.display()))?;
                    return Ok(DataDir { path, keep });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", path.display()));
                }
            }
        }
        anyhow::bail!("no free name for a data directory in {}", parent.display())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the engine is rooted: a subdirectory, so that the baseline file beside it is not
    /// mistaken for engine data.
    pub fn engine_dir(&self) -> PathBuf {
        self.path.join("engine")
    }

    /// Where the raw baseline file goes.
    pub fn baseline_file(&self) -> PathBuf {
        self.path.join("baseline.raw")
    }

    /// Removes the directory now (unless kept), reporting failure.
    pub fn finish(mut self) -> Result<()> {
        let keep = std::mem::replace(&mut self.keep, true);
        if keep {
            eprintln!("strata-bench: kept data in {}", self.path.display());
            return Ok(());
        }
        fs::remove_dir_all(&self.path)
            .with_context(|| format!("removing data directory {}", self.path.display()))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
