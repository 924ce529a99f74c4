//! The write gate every engine keeps: open, closed, or poisoned.
//!
//! After a failed fsync (or flush, or a commit whose outcome is unknown) the engine refuses
//! every further write until it is reopened and has recovered from what is really stored: the
//! page cache may have dropped the data, so a later successful sync would prove nothing (fjall's
//! `Poisoned`, redb's `PreviousIo`). A closed engine refuses writes with [`StorageError::Closed`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Result, StorageError};

/// Whether an engine still takes writes. Lock-free; both states are final for the life of the
/// value, and the first poisoning reason is the one kept (it names the root cause).
#[derive(Debug, Default)]
pub struct WriteGate {
    closed: AtomicBool,
    poisoned: OnceLock<String>,
}

impl WriteGate {
    /// An open gate.
    pub const fn new() -> Self {
        WriteGate {
            closed: AtomicBool::new(false),
            poisoned: OnceLock::new(),
        }
    }

    /// `Ok` if writes may go ahead: [`StorageError::Closed`] once closed, else
    /// [`StorageError::Poisoned`] with the first reason once poisoned.
    pub fn check(&self) -> Result<()> {
        self.check_open()?;
        self.check_poisoned()
    }

    /// [`StorageError::Closed`] once closed, whether poisoned or not.
    pub fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// [`StorageError::Poisoned`] with the first reason once poisoned, whether closed or not.
    pub fn check_poisoned(&self) -> Result<()> {
        match self.poisoned.get() {
            Some(why) => Err(StorageError::Poisoned(why.to_string())),
            None => Ok(()),
        }
    }

    /// Records that the stored state is unknown, and returns the error for the failed write
    /// (with this failure's reason; the gate keeps the first one).
    pub fn poison(&self, why: impl Into<String>) -> StorageError {
        let why = why.into();
        self.poisoned.get_or_init(|| why.clone());
        StorageError::Poisoned(why)
    }

    /// The first poisoning reason, if any.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.get().map(String::as_str)
    }

    /// Closes the gate; true if this call closed it, false if it was closed already.
    pub fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// True once closed or poisoned: nothing more will be written.
    pub fn is_shut(&self) -> bool {
        self.is_closed() || self.poisoned.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_gate_lets_writes_through() {
        let gate = WriteGate::new();
        assert!(gate.check().is_ok());
        assert!(gate.check_poisoned().is_ok());
        assert!(!gate.is_shut());
        assert_eq!(gate.poisoned(), None);
    }

    #[test]
    fn poisoning_keeps_the_first_reason_and_returns_each_failure_s_own() {
        let gate = WriteGate::new();
        let first = gate.poison("fsync failed: EIO");
        assert!(matches!(first, StorageError::Poisoned(ref w) if w == "fsync failed: EIO"));
        let second = gate.poison("fsync failed: ENOSPC");
        assert!(matches!(second, StorageError::Poisoned(ref w) if w == "fsync failed: ENOSPC"));
        assert_eq!(gate.poisoned(), Some("fsync failed: EIO"));
        assert!(matches!(gate.check(), Err(StorageError::Poisoned(w)) if w == "fsync failed: EIO"));
        assert!(gate.is_shut() && !gate.is_closed());
    }

    #[test]
    fn closing_is_once_and_wins_over_poison() {
        let gate = WriteGate::new();
        assert!(gate.close());
        assert!(!gate.close());
        assert!(matches!(gate.check(), Err(StorageError::Closed)));
        assert!(gate.check_poisoned().is_ok());
        gate.poison("late failure");
        assert!(matches!(gate.check(), Err(StorageError::Closed)));
        assert!(matches!(
            gate.check_poisoned(),
            Err(StorageError::Poisoned(_))
        ));
    }
}
