//! Deliveries to the client: packet ids, the client's receive maximum, topic aliases and
//! its packet size limit.

use std::sync::atomic::Ordering;

use mqtt_proto::v5;
use mqtt_proto::{Pid, QoS, QosPid, TopicName};

use super::{Conn, End, Stage};
use crate::hub::{Delivery, Outbound};
use crate::message::now_ms;
use crate::packet;

impl Conn {
    pub(super) fn outbound(&mut self, o: Outbound) -> Result<(), End> {
        let Outbound::Deliver(d) = o;
        self.deliver(*d);
        Ok(())
    }

    fn take_pid(&mut self) -> Pid {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            if self.next_pid != 0 && !self.inflight.contains_key(&self.next_pid) {
                return Pid::try_from(self.next_pid).expect("non-zero");
            }
        }
    }

    pub(super) fn deliver(&mut self, d: Delivery) {
        let now = now_ms();
        if d.msg.expired(now) {
            self.completed(&d);
            return;
        }
        if d.qos == QoS::Level0 {
            self.write_publish(&d, QosPid::Level0, now, false);
            return;
        }
        if self.inflight.len() >= usize::from(self.client_receive_max) {
            self.pending.push_back(d);
            return;
        }
        // A message an earlier connection sent goes again with its packet id and DUP.
        let again = d
            .pid
            .filter(|p| !self.inflight.contains_key(p))
            .and_then(|p| Pid::try_from(p).ok());
        let pid = match again {
            Some(p) => p,
            None => self.take_pid(),
        };
        let (qos_pid, stage) = if d.qos == QoS::Level1 {
            (QosPid::Level1(pid), Stage::Ack)
        } else {
            (QosPid::Level2(pid), Stage::Rec)
        };
        if self.write_publish(&d, qos_pid, now, again.is_some()) {
            self.inflight.insert(pid.value(), (stage, Some(d)));
        } else {
            self.completed(&d);
        }
    }

    /// Encodes one PUBLISH; returns false if it was dropped for the client's size limit.
    fn write_publish(&mut self, d: &Delivery, qos_pid: QosPid, now: i64, dup: bool) -> bool {
        let m = &d.msg;
        let mut topic = TopicName::try_from(m.topic.clone()).expect("topic checked on publish");
        let mut p = v5::Publish::new(qos_pid, topic.clone(), m.payload.clone());
        p.retain = d.retain;
        p.dup = dup;
        let before = self.out.len();
        if self.version.is_v5() {
            let props = &mut p.properties;
            props.payload_is_utf8 = m.props.payload_is_utf8;
            props.message_expiry_interval = m.remaining_expiry(now);
            props.response_topic = m.props.response_topic.clone();
            props.correlation_data = m.props.correlation_data.clone();
            props.user_properties = m.props.user_properties.clone();
            props.content_type = m.props.content_type.clone();
            if self.client_alias_max > 0 {
                if let Some(&alias) = self.out_aliases.get(&m.topic) {
                    topic = TopicName::try_from("").expect("empty topic");
                    p.topic_name = topic;
                    props.topic_alias = Some(alias);
                } else if self.out_aliases.len() < usize::from(self.client_alias_max) {
                    let alias = self.out_aliases.len() as u16 + 1;
                    self.out_aliases.insert(m.topic.clone(), alias);
                    props.topic_alias = Some(alias);
                }
            }
            packet::encode_publish_v5(&p, &d.sub_ids, &mut self.out);
        } else {
            packet::encode(self.version, &v5::Packet::Publish(p), &mut self.out);
        }
        if self.out.len() - before > self.client_max_packet {
            self.out.truncate(before);
            tracing::debug!(client_id = %self.client_id, topic = %m.topic, "message larger than the client's maximum packet size; not sent");
            return false;
        }
        self.hub
            .metrics
            .messages_out
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A delivery is done with (acknowledged, expired or dropped).
    pub(super) fn completed(&mut self, d: &Delivery) {
        if let Some(o) = d.queue_offset {
            self.backlog_outstanding.remove(&o);
            self.maybe_trim_backlog();
        }
    }

    pub(super) fn maybe_trim_backlog(&mut self) {
        if self.backlog_outstanding.is_empty()
            && let Some(end) = self.backlog_end.take()
        {
            let hub = self.hub.clone();
            let session = self.session.clone();
            tokio::spawn(async move { hub.trim_queue(&session, end).await });
        }
    }

    pub(super) fn refill(&mut self) {
        while self.inflight.len() < usize::from(self.client_receive_max) {
            let Some(d) = self.pending.pop_front() else {
                break;
            };
            self.deliver(d);
        }
    }
}
