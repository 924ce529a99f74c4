//! Idempotent producers: per partition, the last sequences of each producer id, so that a
//! retried batch is acknowledged with its original offset instead of being written twice.
//!
//! The state survives restarts as a snapshot in the state log plus the batches written after
//! it: each batch header carries its producer id, epoch and sequence, so recovery reads the
//! partition from the snapshot's offset and replays them. A partition gets its first snapshot
//! when an idempotent producer first writes to it, so a partition without one has never had
//! any and needs no scan.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use strata_record::BatchHeader;

use crate::{BrokerError, Result};

/// Batches remembered per producer for duplicate detection, as Kafka does.
pub const REMEMBERED_BATCHES: usize = 5;
/// A producer silent for this long is forgotten (Kafka's `producer.id.expiration.ms`).
pub const PRODUCER_EXPIRATION_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SeqBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    epoch: i16,
    batches: VecDeque<SeqBatch>,
    last_ms: i64,
}

/// What to do with a batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next batch in sequence: append it.
    Append,
    /// Already written at this base offset: acknowledge again without writing.
    Duplicate {
        /// Where the original was written.
        base_offset: u64,
    },
}

/// The producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStates {
    /// The state reflects every batch below this offset.
    pub covered: u64,
    producers: HashMap<i64, Entry>,
}

fn seq_after(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

fn last_seq(first: i32, records: u32) -> i32 {
    ((i64::from(first) + i64::from(records) - 1) % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerStates {
    /// Decides whether a batch from producer `header.producer_id` is new, a duplicate, or an
    /// error.
    pub fn check(&self, header: &BatchHeader) -> Result<Verdict> {
        let (pid, epoch, first) = (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        );
        let last = last_seq(first, header.record_count());
        let Some(e) = self.producers.get(&pid) else {
            // Unknown producer (new, or expired): accept whatever sequence it continues from.
            return Ok(Verdict::Append);
        };
        if epoch < e.epoch {
            return Err(BrokerError::InvalidProducerEpoch {
                producer_id: pid,
                current: e.epoch,
                got: epoch,
            });
        }
        if epoch > e.epoch {
            return if first == 0 {
                Ok(Verdict::Append)
            } else {
                Err(BrokerError::OutOfOrderSequence {
                    producer_id: pid,
                    expected: 0,
                    got: first,
                })
            };
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Verdict::Duplicate {
                base_offset: b.base_offset,
            });
        }
        let expected = e.batches.back().map_or(first, |b| seq_after(b.last_seq));
        if first == expected {
            Ok(Verdict::Append)
        } else {
            Err(BrokerError::OutOfOrderSequence {
                producer_id: pid,
                expected,
                got: first,
            })
        }
    }

    /// Records a batch written at `base_offset`.
    pub fn record(&mut self, header: &BatchHeader, base_offset: u64, now_ms: i64) {
        let first = header.base_sequence;
        let e = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| Entry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
                last_ms: now_ms,
            });
        if header.producer_epoch != e.epoch {
            e.epoch = header.producer_epoch;
            e.batches.clear();
        }
        if e.batches.len() == REMEMBERED_BATCHES {
            e.batches.pop_front();
        }
        e.batches.push_back(SeqBatch {
            first_seq: first,
            last_seq: last_seq(first, header.record_count()),
            base_offset,
        });
        e.last_ms = now_ms;
        self.covered = self
            .covered
            .max(base_offset + u64::from(header.record_count()));
    }

    /// Forgets producers silent for longer than [`PRODUCER_EXPIRATION_MS`].
    pub fn expire(&mut self, now_ms: i64) {
        self.producers
            .retain(|_, e| now_ms - e.last_ms < PRODUCER_EXPIRATION_MS);
    }

    /// True if no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: records,
        }
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(&header(7, 0, 0, 3)).unwrap(), Verdict::Append);
        s.record(&header(7, 0, 0, 3), 100, 0);
        assert_eq!(s.check(&header(7, 0, 3, 2)).unwrap(), Verdict::Append);
        s.record(&header(7, 0, 3, 2), 103, 0);
        assert_eq!(
            s.check(&header(7, 0, 0, 3)).unwrap(),
            Verdict::Duplicate { base_offset: 100 }
        );
        assert!(matches!(
            s.check(&header(7, 0, 9, 1)),
            Err(BrokerError::OutOfOrderSequence { expected: 5, .. })
        ));
        assert!(matches!(
            s.check(&header(7, -1, 5, 1)),
            Err(BrokerError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(s.check(&header(7, 1, 0, 1)).unwrap(), Verdict::Append);
        assert!(s.check(&header(7, 1, 4, 1)).is_err());
        assert_eq!(s.covered, 105);
        let json = serde_json::to_vec(&s).unwrap();
        assert_eq!(serde_json::from_slice::<ProducerStates>(&json).unwrap(), s);
    }

    #[test]
    fn only_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&header(1, 0, i, 1), u64::from(i as u32), 0);
        }
        assert!(
            s.check(&header(1, 0, 0, 1)).is_err(),
            "too old to be recognised"
        );
        assert_eq!(
            s.check(&header(1, 0, 6, 1)).unwrap(),
            Verdict::Duplicate { base_offset: 6 }
        );
        let mut w = ProducerStates::default();
        w.record(&header(2, 0, i32::MAX - 1, 2), 0, 0);
        assert_eq!(w.check(&header(2, 0, 0, 1)).unwrap(), Verdict::Append);
        s.expire(PRODUCER_EXPIRATION_MS + 1);
        assert!(s.is_empty());
    }
}
