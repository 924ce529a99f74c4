//! One commit, in three steps: [`plan`] decides what to index and what to PUT (pure, so unit
//! tests check it without a bucket), [`Inner::upload`] writes the data objects and then the log
//! object with a conditional create, and [`Inner::commit`] applies the result to the state.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use strata_storage::{Model, Result, ShardNo};

use crate::engine::Inner;
use crate::format::{self, BatchRec, LogIndex, ObjectRec, Op};
use crate::state::Pending;

/// What one commit writes.
#[derive(Debug)]
pub(crate) struct CommitPlan {
    /// The index of the log object: the objects written, every batch, the ops.
    pub index: LogIndex,
    /// The log object's data: the shared model's batches, grouped by shard; empty otherwise.
    pub log_data: BytesMut,
    /// The dedicated model's data objects, one per shard, written before the log object.
    pub puts: Vec<(String, Bytes)>,
}

/// Plans commit `seq` of `items` (buffered batches and compaction's moves) and `ops`.
/// `next_object` is the first free object number: the log object takes it, and in the
/// dedicated model each shard's data object takes one of the numbers after it, in shard order.
pub(crate) fn plan(
    model: Model,
    seq: u64,
    next_object: u64,
    items: &[Pending],
    ops: Vec<Op>,
) -> CommitPlan {
    let mut by_shard: BTreeMap<ShardNo, Vec<&Pending>> = BTreeMap::new();
    for item in items {
        by_shard.entry(item.no).or_default().push(item);
    }
    let mut index = LogIndex {
        seq,
        ops,
        ..LogIndex::default()
    };
    let mut log_data = BytesMut::new();
    let mut puts = Vec::new();
    let log_id = next_object;
    let mut next_object = next_object + 1;
    for (no, batches) in by_shard {
        let (object, data) = match model {
            Model::Shared => (log_id, &mut log_data),
            Model::Dedicated => {
                let id = next_object;
                next_object += 1;
                puts.push((format::data_key(no, seq), BytesMut::new()));
                (id, &mut puts.last_mut().expect("just pushed").1)
            }
        };
        for it in batches {
            index.batches.push(BatchRec {
                no: it.no,
                base: it.base,
                last: it.last,
                max_ts: it.max_ts,
                object,
                position: data.len() as u64,
                length: it.bytes.len() as u32,
                moved_from: it.moved_from,
            });
            data.extend_from_slice(&it.bytes);
        }
        if model == Model::Dedicated {
            let (key, data) = puts.last().expect("just pushed");
            index.objects.push(ObjectRec {
                id: object,
                key: key.clone(),
                size: data.len() as u64,
                seq,
                log: false,
            });
        }
    }
    index.objects.insert(
        0,
        ObjectRec {
            id: log_id,
            key: format::log_key(seq),
            size: log_data.len() as u64,
            seq,
            log: true,
        },
    );
    CommitPlan {
        index,
        log_data,
        puts: puts.into_iter().map(|(k, d)| (k, d.freeze())).collect(),
    }
}

impl Inner {
    /// Writes one commit: everything buffered, `extra` (compaction), and `ops`, then applies it.
    /// The caller holds the log lock (`seq` is the last committed sequence number).
    pub(crate) async fn commit(
        &self,
        seq: &mut u64,
        ops: Vec<Op>,
        extra: Vec<Pending>,
    ) -> Result<()> {
        let (mut items, ops, wal_mark, next_object) = {
            let mut st = self.state.lock();
            st.gate.check()?;
            let mut ops = ops;
            ops.extend(st.take_dirty_trims());
            let items = std::mem::take(&mut st.buffer);
            st.buffer_bytes = 0;
            st.buffer_since = None;
            (items, ops, st.wal_mark, st.next_object)
        };
        items.extend(extra);
        if items.is_empty() && ops.is_empty() {
            return Ok(());
        }
        let this = *seq + 1;
        let CommitPlan {
            index,
            log_data,
            puts,
        } = plan(self.model, this, next_object, &items, ops);
        // The log object takes the planned data by move: the index and footer are appended
        // to it, not to a copy.
        let log = format::encode_log(log_data, &index);
        match self.upload(this, log, &puts).await {
            Ok((puts, put_bytes)) => {
                *seq = this;
                let mut st = self.state.lock();
                st.puts += puts;
                st.put_bytes += put_bytes;
                if let Err(e) = st.apply(&index) {
                    st.gate.poison(format!("cannot apply commit {this}: {e}"));
                }
                st.seq = this;
                st.logs_since_checkpoint += 1;
                st.uploaded(items, self.tuning.cache_bytes);
                drop(st);
                if let Some(wal) = &self.wal {
                    wal.release(wal_mark);
                }
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                let why = format!(
                    "log object {} already exists in {}: another writer uses this prefix; \
                     this engine stops writing",
                    format::log_key(this),
                    self.where_
                );
                tracing::error!("{why}");
                let mut st = self.state.lock();
                let err = st.gate.poison(why);
                st.fail(items, &err);
                Err(err)
            }
            Err(e) => {
                let err = self.err(&e);
                tracing::warn!(error = %err, "s3 engine: upload failed");
                self.state.lock().fail(items, &err);
                Err(err)
            }
        }
    }

    /// PUTs the plan's data objects (up to 16 at a time), then creates its log object
    /// `log/<seq>`, which fails with `AlreadyExists` if another writer has it. Returns the
    /// number of objects and bytes written.
    async fn upload(
        &self,
        seq: u64,
        log_bytes: Bytes,
        data_objects: &[(String, Bytes)],
    ) -> object_store::Result<(u64, u64)> {
        let puts = data_objects.len() as u64 + 1;
        let bytes = data_objects
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum::<u64>()
            + log_bytes.len() as u64;
        let data: Vec<_> = (data_objects.iter())
            .map(|(key, data)| (self.path(key), data.clone()))
            .collect();
        futures::stream::iter(data.into_iter().map(|(path, data)| async move {
            self.store.put(&path, PutPayload::from(data)).await
        }))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.store
            .put_opts(
                &self.path(&format::log_key(seq)),
                PutPayload::from(log_bytes),
                create,
            )
            .await?;
        Ok((puts, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(no: u64, base: u64, len: usize) -> Pending {
        Pending {
            no: ShardNo(no),
            base,
            last: base + 1,
            max_ts: base as i64 * 10,
            bytes: Bytes::from(vec![no as u8; len]),
            done: None,
            wal: false,
            moved_from: None,
        }
    }

    fn data_key(no: u64) -> String {
        format::data_key(ShardNo(no), 7)
    }

    /// (shard, base, object, position, length) of each planned batch.
    fn places(plan: &CommitPlan) -> Vec<(u64, u64, u64, u64, u32)> {
        (plan.index.batches.iter())
            .map(|b| (b.no.get(), b.base, b.object, b.position, b.length))
            .collect()
    }

    #[test]
    fn shared_model_packs_every_shard_into_the_log_object() {
        let items = [item(2, 0, 10), item(1, 5, 20), item(2, 2, 30)];
        let ops = vec![Op::Trim {
            no: ShardNo(1),
            log_start: 3,
        }];
        let plan = plan(Model::Shared, 7, 40, &items, ops.clone());
        assert!(plan.puts.is_empty());
        assert_eq!(
            places(&plan),
            [(1, 5, 40, 0, 20), (2, 0, 40, 20, 10), (2, 2, 40, 30, 30)]
        );
        assert_eq!(plan.log_data.len(), 60);
        assert_eq!(&plan.log_data[..20], &[1u8; 20][..]);
        assert_eq!(&plan.log_data[20..30], &[2u8; 10][..]);
        assert_eq!(
            plan.index.objects,
            [ObjectRec {
                id: 40,
                key: format::log_key(7),
                size: 60,
                seq: 7,
                log: true,
            }]
        );
        assert_eq!((plan.index.seq, plan.index.ops), (7, ops));
    }

    #[test]
    fn dedicated_model_plans_one_data_object_per_shard() {
        let items = [item(2, 0, 10), item(1, 5, 20), item(2, 2, 30)];
        let plan = plan(Model::Dedicated, 7, 40, &items, Vec::new());
        assert_eq!(
            places(&plan),
            [(1, 5, 41, 0, 20), (2, 0, 42, 0, 10), (2, 2, 42, 10, 30)]
        );
        assert!(plan.log_data.is_empty());
        let keys: Vec<_> = plan
            .puts
            .iter()
            .map(|(k, d)| (k.clone(), d.len()))
            .collect();
        assert_eq!(keys, [(data_key(1), 20), (data_key(2), 40)]);
        let objects: Vec<_> = (plan.index.objects.iter())
            .map(|o| (o.id, o.key.clone(), o.size, o.log))
            .collect();
        assert_eq!(
            objects,
            [
                (40, format::log_key(7), 0, true),
                (41, data_key(1), 20, false),
                (42, data_key(2), 40, false),
            ]
        );
    }

    #[test]
    fn compaction_moves_and_metadata_only_commits_are_indexed() {
        let mut moved = item(3, 8, 16);
        moved.moved_from = Some(5);
        let plan = plan(Model::Shared, 2, 9, &[moved], Vec::new());
        let b = plan.index.batches[0];
        assert_eq!((b.moved_from, b.last, b.max_ts), (Some(5), 9, 80));

        let ops = vec![Op::Delete { no: ShardNo(3) }];
        let plan = super::plan(Model::Dedicated, 3, 9, &[], ops.clone());
        assert!(plan.index.batches.is_empty() && plan.puts.is_empty());
        assert_eq!(plan.index.objects.len(), 1);
        assert_eq!(plan.index.ops, ops);
    }
}
