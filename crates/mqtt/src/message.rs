//! One MQTT application message, and its form as a stored record.
//!
//! A message is stored as one record: the key is the MQTT topic, the value the payload, and
//! the QoS, the retain flag and the v5 properties are headers. User properties become headers
//! of their own name, in order, so a Kafka consumer sees them as ordinary headers.

use std::sync::Arc;

use bytes::Bytes;
use mqtt_proto::v5::{PublishProperties, UserProperty, WillProperties};
use mqtt_proto::{QoS, TopicName};
use strata_record::{BatchBuilder, Compression, Record, RecordError};

/// Header names used for MQTT fields.
pub mod header {
    /// "0", "1" or "2".
    pub const QOS: &str = "mqtt.qos";
    /// "1" when the publish had RETAIN set.
    pub const RETAIN: &str = "mqtt.retain";
    /// v5 Content Type.
    pub const CONTENT_TYPE: &str = "mqtt.content_type";
    /// v5 Response Topic.
    pub const RESPONSE_TOPIC: &str = "mqtt.response_topic";
    /// v5 Correlation Data (raw bytes).
    pub const CORRELATION_DATA: &str = "mqtt.correlation_data";
    /// v5 Payload Format Indicator ("1" for UTF-8).
    pub const PAYLOAD_FORMAT: &str = "mqtt.payload_format";
    /// v5 Message Expiry Interval, in seconds from the record's timestamp.
    pub const MESSAGE_EXPIRY: &str = "mqtt.message_expiry";
    /// Client id of the MQTT publisher. Records carrying it were delivered to MQTT
    /// subscribers when published, so the storage-to-MQTT direction skips them.
    pub const ORIGIN: &str = "mqtt.origin";
    /// In a session queue only: the packet id a message was last sent with.
    pub const PID: &str = "mqtt.pid";
    /// Prefix of every header MQTT owns.
    pub const PREFIX: &str = "mqtt.";
}

/// The v5 properties a message carries from publisher to subscribers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    /// Payload Format Indicator.
    pub payload_is_utf8: Option<bool>,
    /// Message Expiry Interval in seconds, as published.
    pub message_expiry: Option<u32>,
    /// Response Topic.
    pub response_topic: Option<TopicName>,
    /// Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order, duplicates kept.
    pub user_properties: Vec<UserProperty>,
    /// Content Type.
    pub content_type: Option<Arc<str>>,
}

impl Props {
    /// The pass-through properties of an inbound PUBLISH (topic alias and subscription id are
    /// per-connection and dropped).
    pub fn from_publish(p: &PublishProperties) -> Self {
        Props {
            payload_is_utf8: p.payload_is_utf8,
            message_expiry: p.message_expiry_interval,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            content_type: p.content_type.clone(),
        }
    }

    /// The properties a will's message carries (the will delay is not one of them).
    pub fn from_will(p: WillProperties) -> Self {
        Props {
            payload_is_utf8: p.payload_is_utf8,
            message_expiry: p.message_expiry_interval,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            content_type: p.content_type,
        }
    }
}

/// An application message on its way to subscribers.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic name.
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// RETAIN flag as published.
    pub retain: bool,
    /// v5 properties.
    pub props: Props,
    /// When it was published (Unix ms), for expiry.
    pub created_ms: i64,
    /// Publishing MQTT client, for no-local; `None` for records from storage.
    pub origin: Option<Arc<str>>,
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Message {
    /// Whether its expiry interval has passed at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.remaining_expiry(now_ms) == Some(0)
    }

    /// Seconds of expiry left at `now_ms` (`Some(0)` once expired), `None` if it never expires.
    pub fn remaining_expiry(&self, now_ms: i64) -> Option<u32> {
        let secs = self.props.message_expiry?;
        let age_ms = (now_ms - self.created_ms).max(0);
        let left_ms = i64::from(secs) * 1000 - age_ms;
        Some(if left_ms <= 0 {
            0
        } else {
            ((left_ms + 999) / 1000) as u32
        })
    }

    /// Appends the message to `builder` as one record.
    pub fn push_record(&self, builder: &mut BatchBuilder) {
        self.push_record_with_pid(builder, None);
    }

    /// As [`Message::push_record`], with the packet id it was last sent with (session queues).
    pub fn push_record_with_pid(&self, builder: &mut BatchBuilder, pid: Option<u16>) {
        let qos = [b'0' + self.qos as u8];
        let pid = pid.map(|p| p.to_string());
        let expiry = self.props.message_expiry.map(|e| e.to_string());
        let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::with_capacity(4);
        headers.push((header::QOS, Some(&qos)));
        if self.retain {
            headers.push((header::RETAIN, Some(b"1")));
        }
        if let Some(o) = &self.origin {
            headers.push((header::ORIGIN, Some(o.as_bytes())));
        }
        if let Some(ct) = &self.props.content_type {
            headers.push((header::CONTENT_TYPE, Some(ct.as_bytes())));
        }
        if let Some(rt) = &self.props.response_topic {
            headers.push((header::RESPONSE_TOPIC, Some(rt.as_bytes())));
        }
        if let Some(cd) = &self.props.correlation_data {
            headers.push((header::CORRELATION_DATA, Some(cd)));
        }
        if let Some(utf8) = self.props.payload_is_utf8 {
            headers.push((header::PAYLOAD_FORMAT, Some(if utf8 { b"1" } else { b"0" })));
        }
        if let Some(e) = &expiry {
            headers.push((header::MESSAGE_EXPIRY, Some(e.as_bytes())));
        }
        if let Some(p) = &pid {
            headers.push((header::PID, Some(p.as_bytes())));
        }
        for up in &self.props.user_properties {
            headers.push((&up.name, Some(up.value.as_bytes())));
        }
        builder.push(
            Some(self.topic.as_bytes()),
            Some(&self.payload),
            &headers,
            self.created_ms,
        );
    }

    /// One message as a complete record batch.
    pub fn to_batch(&self) -> Result<Bytes, RecordError> {
        let mut b = BatchBuilder::new(Compression::None);
        self.push_record(&mut b);
        b.build()
    }

    /// The message a stored record stands for.
    ///
    /// The topic is the key when that is a valid topic name, else `fallback_topic`; the QoS is
    /// the `mqtt.qos` header, else `default_qos`. Headers outside `mqtt.` become user
    /// properties. Returns `None` for a record with no usable topic.
    pub fn from_record(record: &Record, fallback_topic: &str, default_qos: QoS) -> Option<Self> {
        let topic: Arc<str> = match record
            .key
            .as_ref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .filter(|k| !k.is_empty() && TopicName::try_from(*k).is_ok())
        {
            Some(k) => Arc::from(k),
            None if !fallback_topic.is_empty() => Arc::from(fallback_topic),
            None => return None,
        };
        let mut m = Message {
            topic,
            payload: record.value.clone().unwrap_or_default(),
            qos: default_qos,
            retain: false,
            props: Props::default(),
            created_ms: record.timestamp,
            origin: None,
        };
        for h in &record.headers {
            let (Ok(name), Some(value)) = (std::str::from_utf8(&h.key), h.value.as_ref()) else {
                continue;
            };
            let text = || std::str::from_utf8(value).ok();
            match name {
                header::QOS => {
                    if let Some(q) = text().and_then(|t| t.parse::<u8>().ok())
                        && let Ok(q) = QoS::from_u8(q)
                    {
                        m.qos = q;
                    }
                }
                header::RETAIN => m.retain = value.as_ref() == b"1",
                header::ORIGIN => m.origin = text().map(Arc::from),
                header::CONTENT_TYPE => m.props.content_type = text().map(Arc::from),
                header::RESPONSE_TOPIC => {
                    m.props.response_topic = text().and_then(|t| TopicName::try_from(t).ok())
                }
                header::CORRELATION_DATA => m.props.correlation_data = Some(value.clone()),
                header::PAYLOAD_FORMAT => m.props.payload_is_utf8 = Some(value.as_ref() == b"1"),
                header::MESSAGE_EXPIRY => {
                    m.props.message_expiry = text().and_then(|t| t.parse().ok())
                }
                n if n.starts_with(header::PREFIX) => {}
                n => {
                    if let Some(v) = text() {
                        m.props.user_properties.push(UserProperty {
                            name: Arc::from(n),
                            value: Arc::from(v),
                        });
                    }
                }
            }
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_record::Batch;

    #[test]
    fn record_round_trip_keeps_properties_in_order() {
        let m = Message {
            topic: Arc::from("sensors/a"),
            payload: Bytes::from_static(b"21.5"),
            qos: QoS::Level2,
            retain: true,
            props: Props {
                payload_is_utf8: Some(true),
                message_expiry: Some(60),
                response_topic: Some(TopicName::try_from("reply/a").unwrap()),
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                user_properties: vec![
                    UserProperty {
                        name: Arc::from("unit"),
                        value: Arc::from("C"),
                    },
                    UserProperty {
                        name: Arc::from("unit"),
                        value: Arc::from("K"),
                    },
                ],
                content_type: Some(Arc::from("text/plain")),
            },
            created_ms: 1_700_000_000_000,
            origin: Some(Arc::from("client-1")),
        };
        let batch = Batch::validate(m.to_batch().unwrap()).unwrap();
        let records: Vec<Record> = batch.records().unwrap().map(|r| r.unwrap()).collect();
        let back = Message::from_record(&records[0], "", QoS::Level0).unwrap();
        assert_eq!(back.topic, m.topic);
        assert_eq!(back.payload, m.payload);
        assert_eq!(back.qos, m.qos);
        assert!(back.retain);
        assert_eq!(back.props, m.props);
        assert_eq!(back.created_ms, m.created_ms);
        assert_eq!(back.origin, m.origin);
    }

    #[test]
    fn expiry_counts_down_from_publication() {
        let mut m = Message {
            topic: Arc::from("t"),
            payload: Bytes::new(),
            qos: QoS::Level1,
            retain: false,
            props: Props::default(),
            created_ms: 10_000,
            origin: None,
        };
        assert_eq!(m.remaining_expiry(20_000), None);
        m.props.message_expiry = Some(5);
        assert_eq!(m.remaining_expiry(10_000), Some(5));
        assert_eq!(m.remaining_expiry(12_500), Some(3));
        assert!(!m.expired(14_999));
        assert!(m.expired(15_000));
    }
}
