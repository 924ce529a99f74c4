//! Opening: the newest checkpoint, the log objects after it, then the write-ahead log.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use strata_storage::{Result, StorageError};

use crate::engine::Inner;
use crate::format::{self, LogIndex};
use crate::state::State;
use crate::wal;

impl Inner {
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let prefix = self.path(dir);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        let root = format!("{}/", self.root);
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m.location.as_ref().strip_prefix(&root)?.to_owned();
                Some((key, m.size))
            })
            .collect())
    }

    pub(crate) async fn recover(&self, wal_entries: Vec<wal::Entry>) -> Result<u64> {
        let mut st = State::default();
        let checkpoints = self.list("checkpoint/").await?;
        let latest = checkpoints
            .iter()
            .filter_map(|(k, _)| format::parse_seq(k.strip_prefix("checkpoint/")?))
            .max();
        let mut seq = 0;
        if let Some(c) = latest {
            let key = format::checkpoint_key(c);
            let bytes = self
                .store
                .get(&self.path(&key))
                .await
                .map_err(|e| self.err(e))?
                .bytes()
                .await
                .map_err(|e| self.err(e))?;
            let cp = format::decode_checkpoint(&bytes)
                .map_err(|why| StorageError::corruption(self.path(&key).as_ref(), 0, why))?;
            st.load_checkpoint(&cp)?;
            seq = c;
        }
        let mut logs: Vec<(u64, u64)> = self
            .list("log/")
            .await?
            .into_iter()
            .filter_map(|(k, size)| Some((format::parse_seq(k.strip_prefix("log/")?)?, size)))
            .filter(|(s, _)| *s > seq)
            .collect();
        logs.sort();
        for (s, size) in logs {
            if s != seq + 1 {
                return Err(StorageError::corruption(
                    self.path(&format::log_key(seq + 1)).as_ref(),
                    0,
                    format!("log object is missing (found {s} after {seq})"),
                ));
            }
            let index = self.read_index(s, size).await?;
            st.apply(&index)?;
            seq = s;
        }
        st.seq = seq;
        st.checkpoint_seq = latest.unwrap_or(0);
        st.logs_since_checkpoint = seq - st.checkpoint_seq;
        let mut replayed = 0usize;
        for e in wal_entries {
            replayed += usize::from(st.replay_wal(e)?);
        }
        st.finish_recovery(self.tuning.cache_bytes);
        if replayed > 0 {
            tracing::info!(batches = replayed, where_ = %self.where_,
                "s3 engine: write-ahead log batches not yet uploaded will be uploaded");
        }
        *self.state.lock() = st;
        Ok(seq)
    }

    async fn read_index(&self, seq: u64, size: u64) -> Result<LogIndex> {
        let key = format::log_key(seq);
        let path = self.path(&key);
        let corrupt = |pos: u64, why: String| StorageError::corruption(path.as_ref(), pos, why);
        let tail_len = size.min(64 << 10);
        let tail = self
            .store
            .get_range(&path, size - tail_len..size)
            .await
            .map_err(|e| self.err(e))?;
        let (index_len, crc) = format::decode_footer(&tail).map_err(|w| corrupt(size, w))?;
        let need = (index_len + format::FOOTER_LEN) as u64;
        if need > size {
            return Err(corrupt(size, "index longer than the object".into()));
        }
        let start = size - need;
        let index = if need <= tail_len {
            let from = (tail_len - need) as usize;
            tail.slice(from..from + index_len)
        } else {
            self.store
                .get_range(&path, start..start + index_len as u64)
                .await
                .map_err(|e| self.err(e))?
        };
        let index = format::decode_index(&index, crc).map_err(|w| corrupt(start, w))?;
        if index.seq != seq {
            return Err(corrupt(start, format!("index says sequence {}", index.seq)));
        }
        Ok(index)
    }
}
