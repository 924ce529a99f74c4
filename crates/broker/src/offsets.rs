//! Committed consumer offsets and producer ids, both kept in the state log.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Broker, Result};

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub offset: i64,
    /// Leader epoch the consumer saw (-1 if none).
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: Option<String>,
    /// When it was committed (ms since the epoch).
    pub commit_ms: i64,
}

fn key(group: &str, topic: &str, partition: u32) -> String {
    // Group names may hold '/', topic names may not: split from the right.
    format!("offset/{group}/{topic}/{partition}")
}

pub(crate) fn decode(key: &str, value: &[u8]) -> Option<(String, String, u32, CommittedOffset)> {
    let rest = key.strip_prefix("offset/")?;
    let (rest, partition) = rest.rsplit_once('/')?;
    let (group, topic) = rest.rsplit_once('/')?;
    let offset = serde_json::from_slice(value).ok()?;
    Some((
        group.to_owned(),
        topic.to_owned(),
        partition.parse().ok()?,
        offset,
    ))
}

/// Block of producer ids handed out before the next is recorded.
const ID_BLOCK: i64 = 1000;

/// Producer id allocation: ids are never reused, across restarts too.
#[derive(Debug)]
pub(crate) struct ProducerIds {
    next: i64,
    /// First id not yet covered by the durable record.
    reserved_until: i64,
}

impl ProducerIds {
    pub(crate) fn restore(saved: Option<&Bytes>) -> Self {
        let next = saved
            .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
            .unwrap_or(0);
        ProducerIds {
            next,
            reserved_until: next,
        }
    }
}

impl Broker {
    /// Durably stores committed offsets of one group, all in one atomic write.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<(String, u32, CommittedOffset)>,
    ) -> Result<()> {
        let changes = offsets
            .iter()
            .map(|(t, p, o)| {
                let json = serde_json::to_vec(o).expect("offset serialises");
                (key(group, t, *p), Some(Bytes::from(json)))
            })
            .collect();
        self.state().put(changes).await?;
        let mut all = self.offsets.write();
        let g = all.entry(group.to_owned()).or_default();
        for (t, p, o) in offsets {
            g.insert((t, p), o);
        }
        Ok(())
    }

    /// A group's committed offsets.
    pub fn committed_offsets(&self, group: &str) -> HashMap<(String, u32), CommittedOffset> {
        self.offsets.read().get(group).cloned().unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups_with_offsets(&self) -> Vec<String> {
        self.offsets.read().keys().cloned().collect()
    }

    /// Deletes every committed offset of a group.
    pub async fn delete_group_offsets(&self, group: &str) -> Result<()> {
        let removed = self.offsets.write().remove(group).unwrap_or_default();
        let changes = removed
            .keys()
            .map(|(t, p)| (key(group, t, *p), None))
            .collect();
        self.state().put(changes).await
    }

    /// Forgets every committed offset of a topic; returns the state-log changes that make it
    /// durable, for the caller to write together with the topic's deletion.
    pub(crate) fn forget_offsets_of_topic(&self, topic: &str) -> Vec<(String, Option<Bytes>)> {
        let mut changes = Vec::new();
        for (group, offsets) in self.offsets.write().iter_mut() {
            offsets.retain(|(t, p), _| {
                let keep = t != topic;
                if !keep {
                    changes.push((key(group, t, *p), None));
                }
                keep
            });
        }
        changes
    }

    /// A new producer id (epoch 0), never handed out before.
    pub async fn new_producer_id(&self) -> Result<i64> {
        // Held across the write, so that ids past the durable reservation are never handed out.
        let mut ids = self.producer_ids.lock().await;
        if ids.next >= ids.reserved_until {
            let reserve = ids.reserved_until + ID_BLOCK;
            self.state()
                .put(vec![(
                    "producer-ids".into(),
                    Some(Bytes::from(reserve.to_string())),
                )])
                .await?;
            ids.reserved_until = reserve;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_keys_round_trip_with_slashes_in_group_names() {
        let o = CommittedOffset {
            offset: 5,
            leader_epoch: -1,
            metadata: None,
            commit_ms: 1,
        };
        let k = key("team/app", "orders.v2", 3);
        let v = serde_json::to_vec(&o).unwrap();
        assert_eq!(
            decode(&k, &v),
            Some(("team/app".into(), "orders.v2".into(), 3, o))
        );
    }
}
