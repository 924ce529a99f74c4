//! The batches the producer actually formed, from librdkafka's statistics.
//!
//! librdkafka emits a JSON document every `statistics.interval.ms`. For each topic it carries
//! rolling windows `batchsize` (bytes of each partition's MessageSet in a ProduceRequest, after
//! compression) and `batchcnt` (messages in it). Each emission rolls the window over, so adding
//! up every window's `sum` and `cnt` gives totals over the whole run.

use serde_json::Value;

/// Every produced batch the statistics have reported so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchTotals {
    /// Batches (one partition's MessageSet in one ProduceRequest).
    pub batches: u64,
    /// Their bytes as sent.
    pub bytes: u64,
    /// Their messages.
    pub messages: u64,
}

impl BatchTotals {
    /// Adds the windows of `topic` from one statistics document; documents without them (or
    /// that do not parse) add nothing.
    pub fn add_json(&mut self, json: &[u8], topic: &str) {
        let Ok(doc) = serde_json::from_slice::<Value>(json) else {
            return;
        };
        let t = &doc["topics"][topic];
        let field = |window: &str, name: &str| t[window][name].as_u64().unwrap_or(0);
        // Both windows count the same batches; take `batchsize`'s count as the number.
        self.batches += field("batchsize", "cnt");
        self.bytes += field("batchsize", "sum");
        self.messages += field("batchcnt", "sum");
    }

    /// Average bytes per batch, if any batch was reported.
    pub fn avg_bytes(&self) -> Option<f64> {
        (self.batches > 0).then(|| self.bytes as f64 / self.batches as f64)
    }

    /// Average messages per batch, if any batch was reported.
    pub fn avg_messages(&self) -> Option<f64> {
        (self.batches > 0 && self.messages > 0).then(|| self.messages as f64 / self.batches as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_add_up_across_emissions() {
        let doc = |cnt: u64, sum: u64, msgs: u64| {
            format!(
                r#"{{"name":"p","topics":{{"t":{{"batchsize":{{"cnt":{cnt},"sum":{sum},"avg":0}},
                "batchcnt":{{"cnt":{cnt},"sum":{msgs}}}}},"other":{{"batchsize":{{"cnt":9,"sum":9}}}}}}}}"#
            )
        };
        let mut t = BatchTotals::default();
        assert_eq!(t.avg_bytes(), None);
        t.add_json(doc(2, 2000, 20).as_bytes(), "t");
        t.add_json(doc(0, 0, 0).as_bytes(), "t");
        t.add_json(doc(2, 4000, 60).as_bytes(), "t");
        t.add_json(b"not json", "t");
        t.add_json(br#"{"topics":{}}"#, "t");
        assert_eq!(
            t,
            BatchTotals {
                batches: 4,
                bytes: 6000,
                messages: 80
            }
        );
        assert_eq!(t.avg_bytes(), Some(1500.0));
        assert_eq!(t.avg_messages(), Some(20.0));
    }
}
