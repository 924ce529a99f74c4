//! The state machine: the cluster image, with snapshots on disk.
//!
//! The image lives in memory. It is made durable by snapshots (a file replaced atomically)
//! and by the log: at start openraft applies the committed entries after the snapshot again.
//! Readers see it through an [`ImageReader`] and learn of changes from a watch of the last
//! applied log id, so applying an entry changes the image in place instead of copying it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{io, meta};
use crate::command::Reply;
use crate::image::ClusterImage;
use crate::types::{TypeConfig, typ};

const SNAPSHOT: &[u8; 4] = b"SSNP";

type StorageResult<T> = Result<T, typ::StorageError>;

/// A snapshot as kept on disk and sent to followers: its meta and the image as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: typ::SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Machine {
    image: ClusterImage,
    last_applied: Option<typ::LogId>,
    membership: typ::StoredMembership,
    snapshot: Option<StoredSnapshot>,
    /// How many snapshots this process built (part of their ids).
    built: u64,
}

/// The cluster image as the Raft group's state machine. Clones share one machine.
#[derive(Clone, Debug)]
pub struct StateMachine {
    machine: Arc<RwLock<Machine>>,
    dir: PathBuf,
    applied: watch::Sender<Option<typ::LogId>>,
}

/// Read access to the image a [`StateMachine`] holds.
#[derive(Clone, Debug)]
pub struct ImageReader(Arc<RwLock<Machine>>);

impl ImageReader {
    /// Runs `f` on the image as last applied (applying waits meanwhile: keep `f` short).
    pub fn read<R>(&self, f: impl FnOnce(&ClusterImage) -> R) -> R {
        f(&self.0.read().unwrap_or_else(|e| e.into_inner()).image)
    }
}

impl StateMachine {
    /// Opens the state machine in `dir`: the last snapshot, if any.
    pub fn open(dir: &Path) -> StorageResult<Self> {
        let snapshot: Option<StoredSnapshot> = meta::read(&dir.join("snapshot"), SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, &io(e)))?;
        let mut machine = Machine {
            image: ClusterImage::default(),
            last_applied: None,
            membership: typ::StoredMembership::default(),
            snapshot: None,
            built: 0,
        };
        if let Some(s) = snapshot {
            machine.image = decode(&s)?;
            machine.last_applied = s.meta.last_log_id;
            machine.membership = s.meta.last_membership.clone();
            machine.snapshot = Some(s);
        }
        let (applied, _) = watch::channel(machine.last_applied);
        Ok(Self {
            machine: Arc::new(RwLock::new(machine)),
            dir: dir.to_owned(),
            applied,
        })
    }

    /// The image, to read.
    pub fn reader(&self) -> ImageReader {
        ImageReader(self.machine.clone())
    }

    /// The last applied log id, and every later one: the image changed with it.
    pub fn subscribe(&self) -> watch::Receiver<Option<typ::LogId>> {
        self.applied.subscribe()
    }

    fn read(&self) -> RwLockReadGuard<'_, Machine> {
        self.machine.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Machine> {
        self.machine.write().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, snapshot: &StoredSnapshot) -> StorageResult<()> {
        meta::write(&self.dir.join("snapshot"), SNAPSHOT, snapshot, true).map_err(|e| {
            StorageIOError::write_snapshot(Some(snapshot.meta.signature()), &io(e)).into()
        })
    }
}

fn decode(s: &StoredSnapshot) -> StorageResult<ClusterImage> {
    serde_json::from_slice(&s.data)
        .map_err(|e| StorageIOError::read_snapshot(Some(s.meta.signature()), &io(e)).into())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // One consistent view: the image encoded with the index and membership it was
        // applied to, under one lock.
        let (data, last_applied, membership, built) = {
            let mut m = self.write();
            m.built += 1;
            let data = serde_json::to_vec(&m.image)
                .map_err(|e| StorageIOError::read_state_machine(&io(e)))?;
            (data, m.last_applied, m.membership.clone(), m.built)
        };
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{built}", id.leader_id, id.index),
            None => format!("--{built}"),
        };
        let stored = StoredSnapshot {
            meta: typ::SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id,
            },
            data,
        };
        self.persist(&stored)?;
        let out = Snapshot {
            meta: stored.meta.clone(),
            snapshot: Box::new(Cursor::new(stored.data.clone())),
        };
        self.write().snapshot = Some(stored);
        Ok(out)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<typ::LogId>, typ::StoredMembership)> {
        let m = self.read();
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Reply>>
    where
        I: IntoIterator<Item = typ::Entry> + Send,
    {
        let mut m = self.write();
        let mut replies = Vec::new();
        for entry in entries {
            m.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Reply::Applied,
                EntryPayload::Normal(command) => m.image.apply(&command, entry.log_id.index),
                EntryPayload::Membership(membership) => {
                    m.membership = typ::StoredMembership::new(Some(entry.log_id), membership);
                    Reply::Applied
                }
            };
            replies.push(reply);
        }
        let applied = m.last_applied;
        drop(m);
        self.applied.send_replace(applied);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &typ::SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let image = decode(&stored)?;
        self.persist(&stored)?;
        {
            let mut m = self.write();
            m.image = image;
            m.last_applied = meta.last_log_id;
            m.membership = meta.last_membership.clone();
            m.snapshot = Some(stored);
        }
        self.applied.send_replace(meta.last_log_id);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let m = self.read();
        Ok(m.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
