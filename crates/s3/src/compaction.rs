//! Maintenance in the bucket: checkpoints, compaction of small or mostly dead objects, and
//! deletion of objects nothing refers to.

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use strata_storage::Result;

use crate::engine::{Inner, check_stored};
use crate::format;
use crate::state::Pending;

impl Inner {
    /// Writes a checkpoint of the state; the caller holds the log lock.
    pub(crate) async fn checkpoint(&self, _seq: &mut u64) -> Result<()> {
        let (cp, previous) = {
            let st = self.state.lock();
            (st.checkpoint(), st.checkpoint_seq)
        };
        if cp.seq == previous && previous != 0 {
            return Ok(());
        }
        let key = format::checkpoint_key(cp.seq);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(
                &self.path(&key),
                PutPayload::from(format::encode_checkpoint(&cp)),
                opts,
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let why = format!(
                    "checkpoint {key} already exists in {}: another writer uses this prefix",
                    self.where_
                );
                return Err(self.state.lock().gate.poison(why));
            }
            Err(e) => return Err(self.err(e)),
        }
        {
            let mut st = self.state.lock();
            st.checkpoint_seq = cp.seq;
            st.logs_since_checkpoint = 0;
        }
        if previous != 0 && previous != cp.seq {
            let old = self.path(&format::checkpoint_key(previous));
            if let Err(e) = self.store.delete(&old).await {
                tracing::warn!(error = %e, "s3 engine: cannot delete an old checkpoint");
            }
        }
        Ok(())
    }

    /// Deletes objects nothing refers to any more; returns how many.
    pub(crate) async fn delete_dead(&self) -> Result<u64> {
        let dead = self.state.lock().dead_objects();
        let mut deleted = 0;
        for (id, key) in dead {
            match self.store.delete(&self.path(&key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.state.lock().objects.remove(&id);
                    deleted += 1;
                }
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(deleted)
    }

    /// Deletes keys under the prefix that no metadata refers to (left by a crash between a
    /// data PUT and its log object, or between a checkpoint and the deletions after it).
    pub(crate) async fn collect_orphans(&self) -> Result<u64> {
        let known = self.state.lock().known_keys();
        let mut deleted = 0;
        for dir in ["data/", "log/", "checkpoint/"] {
            for (key, _) in self.list(dir).await? {
                if !known.contains(&key) {
                    match self.store.delete(&self.path(&key)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                        Err(e) => return Err(self.err(e)),
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Rewrites the live batches of small or mostly dead objects into new ones.
    pub(crate) async fn compact(&self) -> Result<u64> {
        let plan = self
            .state
            .lock()
            .compaction_plan(self.tuning.compact_below, self.tuning.compact_max);
        if plan.is_empty() {
            return Ok(0);
        }
        let mut extra = Vec::new();
        let mut moved = 0;
        for (obj, key, locs) in plan {
            let path = self.path(&key);
            let ranges: Vec<_> = locs
                .iter()
                .map(|(_, l)| l.pos..l.pos + l.len as u64)
                .collect();
            let chunks = match self.store.get_ranges(&path, &ranges).await {
                Ok(c) => c,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.err(e)),
            };
            for ((no, loc), bytes) in locs.into_iter().zip(chunks) {
                check_stored(&bytes, loc.base, &path, loc.pos)?;
                moved += bytes.len() as u64;
                extra.push(Pending {
                    no,
                    base: loc.base,
                    last: loc.last,
                    max_ts: loc.max_ts,
                    bytes,
                    done: None,
                    wal: false,
                    moved_from: Some(obj),
                });
            }
        }
        let mut seq = self.log.lock().await;
        self.commit(&mut seq, Vec::new(), extra).await?;
        Ok(moved)
    }
}
