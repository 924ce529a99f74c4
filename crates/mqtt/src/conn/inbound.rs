//! Packets from the client.

use std::sync::Arc;

use bytes::BytesMut;
use mqtt_proto::v5::{self, DisconnectReasonCode};
use mqtt_proto::{Pid, QoS};
use tokio::io::AsyncWrite;

use super::{Conn, End, Stage, WRITE_THRESHOLD};
use crate::hub::{Delivery, split_shared};
use crate::message::{Message, Props, now_ms};
use crate::packet::{self, BadInput};
use crate::topic::SubOptions;

impl Conn {
    /// Handles every complete packet in `inbuf`.
    pub(super) async fn handle_buffered<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        inbuf: &mut BytesMut,
        max: usize,
    ) -> Result<(), End> {
        while let Some(len) = packet::frame_len(inbuf, max)? {
            let frame = inbuf.split_to(len);
            let p = packet::decode(self.version, &frame)?;
            self.handle(p).await?;
            if self.out.len() >= WRITE_THRESHOLD {
                self.write_out(wr).await?;
            }
        }
        Ok(())
    }

    async fn handle(&mut self, p: v5::Packet) -> Result<(), End> {
        match p {
            v5::Packet::Publish(p) => self.on_publish(p).await?,
            v5::Packet::Puback(a) => {
                let pid = a.pid.value();
                match self.inflight.remove(&pid) {
                    Some((Stage::Ack, d)) => {
                        if let Some(d) = d {
                            self.completed(&d);
                        }
                        self.refill();
                    }
                    Some(other) => {
                        self.inflight.insert(pid, other);
                    }
                    None => {}
                }
            }
            v5::Packet::Pubrec(r) => {
                let pid = r.pid.value();
                match self.inflight.remove(&pid) {
                    Some((Stage::Rec, d)) => {
                        if let Some(d) = &d {
                            self.completed(d);
                        }
                        if (r.reason_code as u8) < 0x80 {
                            self.inflight.insert(pid, (Stage::Comp, d));
                            self.send(&v5::Packet::Pubrel(v5::Pubrel::new_success(r.pid)));
                        } else {
                            self.refill();
                        }
                    }
                    Some(other) => {
                        self.inflight.insert(pid, other);
                    }
                    None => self.send(&v5::Packet::Pubrel(v5::Pubrel::new(
                        r.pid,
                        v5::PubrelReasonCode::PacketIdentifierNotFound,
                    ))),
                }
            }
            v5::Packet::Pubcomp(c) => {
                if let Some((Stage::Comp, _)) = self.inflight.remove(&c.pid.value()) {
                    self.refill();
                }
            }
            v5::Packet::Pubrel(r) => {
                let known = self.session.live.lock().awaiting_rel.remove(&r.pid.value());
                let code = if known || !self.version.is_v5() {
                    v5::PubcompReasonCode::Success
                } else {
                    v5::PubcompReasonCode::PacketIdentifierNotFound
                };
                self.send(&v5::Packet::Pubcomp(v5::Pubcomp::new(r.pid, code)));
            }
            v5::Packet::Subscribe(s) => self.on_subscribe(s).await?,
            v5::Packet::Unsubscribe(u) => {
                let mut codes = Vec::with_capacity(u.topics.len());
                for f in &u.topics {
                    codes.push(match self.hub.unsubscribe(&self.session, f).await {
                        Ok(true) => v5::UnsubscribeReasonCode::Success,
                        Ok(false) => v5::UnsubscribeReasonCode::NoSubscriptionExisted,
                        Err(e) => return Err(End::Internal(e)),
                    });
                }
                self.send(&v5::Packet::Unsuback(v5::Unsuback::new(u.pid, codes)));
            }
            v5::Packet::Pingreq => self.send(&v5::Packet::Pingresp),
            v5::Packet::Disconnect(d) => {
                if let Some(e) = d.properties.session_expiry_interval {
                    if self.expiry == 0 && e != 0 {
                        return Err(BadInput::protocol(
                            "DISCONNECT sets a session expiry on a session that had none",
                        )
                        .into());
                    }
                    self.expiry = e;
                }
                return Err(End::Disconnected {
                    with_will: d.reason_code == DisconnectReasonCode::DisconnectWithWillMessage,
                });
            }
            v5::Packet::Connect(_) => return Err(BadInput::protocol("second CONNECT").into()),
            v5::Packet::Auth(_) => {
                return Err(BadInput::protocol("AUTH without an authentication method").into());
            }
            v5::Packet::Connack(_)
            | v5::Packet::Suback(_)
            | v5::Packet::Unsuback(_)
            | v5::Packet::Pingresp => {
                return Err(BadInput::protocol("a packet only a server sends").into());
            }
        }
        Ok(())
    }

    async fn on_publish(&mut self, p: v5::Publish) -> Result<(), End> {
        let mut topic = p.topic_name.clone();
        if let Some(alias) = p.properties.topic_alias {
            if alias == 0 || alias > self.hub.config.topic_alias_max {
                return Err(BadInput::new(
                    DisconnectReasonCode::TopicAliasInvalid,
                    format!(
                        "topic alias {alias} is outside 1..={}",
                        self.hub.config.topic_alias_max
                    ),
                )
                .into());
            }
            if topic.is_empty() {
                topic = self.in_aliases.get(&alias).cloned().ok_or_else(|| {
                    BadInput::protocol(format!("topic alias {alias} was never set"))
                })?;
            } else {
                self.in_aliases.insert(alias, topic.clone());
            }
        } else if topic.is_empty() {
            return Err(if self.version.is_v5() {
                BadInput::protocol("PUBLISH without a topic name or alias")
            } else {
                BadInput::malformed("PUBLISH with an empty topic name")
            }
            .into());
        }
        let qos = p.qos_pid.qos();
        let pid = p.qos_pid.pid();
        if let Some(pid) = pid
            && qos == QoS::Level2
        {
            let live = self.session.live.lock();
            if live.awaiting_rel.contains(&pid.value()) {
                drop(live);
                self.send(&v5::Packet::Pubrec(v5::Pubrec::new_success(pid)));
                return Ok(());
            }
            if live.awaiting_rel.len() >= usize::from(self.hub.config.receive_maximum) {
                return Err(BadInput::new(
                    DisconnectReasonCode::ReceiveMaximumExceeded,
                    format!(
                        "more than {} QoS 2 publishes awaiting release",
                        self.hub.config.receive_maximum
                    ),
                )
                .into());
            }
        }
        if !self.identity.may_publish(&topic) {
            tracing::info!(client_id = %self.client_id, user = ?self.identity.user, topic = %topic, "publish denied by the ACL");
            let reason = self.reason("not authorised to publish to this topic");
            self.ack(qos, pid, true, reason);
            return Ok(());
        }
        let msg = Arc::new(Message {
            topic: Arc::from(&*topic),
            payload: p.payload,
            qos,
            retain: p.retain,
            props: Props::from_publish(&p.properties),
            created_ms: now_ms(),
            origin: Some(self.client_id.clone()),
        });
        if let Err(e) = self.hub.publish(msg).await {
            if qos == QoS::Level0 || !self.version.is_v5() {
                return Err(End::Internal(e));
            }
            tracing::error!(client_id = %self.client_id, topic = %topic, error = %e, "cannot store a published message");
            let code = 0x80;
            self.ack_code(
                qos,
                pid,
                code,
                self.reason("the server could not store the message"),
            );
            return Ok(());
        }
        self.ack(qos, pid, false, None);
        Ok(())
    }

    fn ack(&mut self, qos: QoS, pid: Option<Pid>, denied: bool, reason: Option<Arc<str>>) {
        let code = if denied && self.version.is_v5() {
            0x87
        } else {
            0
        };
        self.ack_code(qos, pid, code, reason);
    }

    fn ack_code(&mut self, qos: QoS, pid: Option<Pid>, code: u8, reason: Option<Arc<str>>) {
        let Some(pid) = pid else { return };
        match qos {
            QoS::Level0 => {}
            QoS::Level1 => {
                let mut a = v5::Puback::new(
                    pid,
                    v5::PubackReasonCode::from_u8(code).unwrap_or(v5::PubackReasonCode::Success),
                );
                a.properties.reason_string = reason;
                self.send(&v5::Packet::Puback(a));
            }
            QoS::Level2 => {
                if code < 0x80 {
                    self.session.live.lock().awaiting_rel.insert(pid.value());
                }
                let mut a = v5::Pubrec::new(
                    pid,
                    v5::PubrecReasonCode::from_u8(code).unwrap_or(v5::PubrecReasonCode::Success),
                );
                a.properties.reason_string = reason;
                self.send(&v5::Packet::Pubrec(a));
            }
        }
    }

    async fn on_subscribe(&mut self, s: v5::Subscribe) -> Result<(), End> {
        let sub_id = s.properties.subscription_id.map(|v| v.value());
        if sub_id == Some(0) {
            return Err(BadInput::protocol("subscription identifier 0").into());
        }
        let mut codes = Vec::with_capacity(s.topics.len());
        let mut retained: Vec<Delivery> = Vec::new();
        let mut denied = false;
        for (filter, opts) in &s.topics {
            let full: &str = filter;
            let (group, f) = split_shared(full);
            if full.starts_with("$share/") {
                let bad_group = group.is_none_or(|g| g.is_empty() || g.contains(['+', '#']));
                if bad_group || f.is_empty() {
                    codes.push(v5::SubscribeReasonCode::TopicFilterInvalid);
                    continue;
                }
                if opts.no_local && self.version.is_v5() {
                    return Err(BadInput::protocol("no local on a shared subscription").into());
                }
            }
            if !self.identity.may_subscribe(f) {
                tracing::info!(client_id = %self.client_id, user = ?self.identity.user, filter = %full, "subscribe denied by the ACL");
                codes.push(v5::SubscribeReasonCode::NotAuthorized);
                denied = true;
                continue;
            }
            let v5c = self.version.is_v5();
            let so = SubOptions {
                qos: opts.max_qos as u8,
                no_local: v5c && opts.no_local,
                retain_as_published: v5c && opts.retain_as_published,
                retain_handling: if v5c { opts.retain_handling as u8 } else { 0 },
                id: sub_id,
            };
            let existed = self
                .hub
                .subscribe(&self.session, full, so)
                .await
                .map_err(End::Internal)?;
            codes.push(match opts.max_qos {
                QoS::Level0 => v5::SubscribeReasonCode::GrantedQoS0,
                QoS::Level1 => v5::SubscribeReasonCode::GrantedQoS1,
                QoS::Level2 => v5::SubscribeReasonCode::GrantedQoS2,
            });
            let send_retained = group.is_none()
                && (so.retain_handling == 0 || (so.retain_handling == 1 && !existed));
            if send_retained {
                for m in self.hub.retained_for(f) {
                    let qos = QoS::from_u8((m.qos as u8).min(so.qos)).unwrap_or(QoS::Level0);
                    retained.push(Delivery {
                        msg: m,
                        qos,
                        retain: true,
                        sub_ids: sub_id.into_iter().collect(),
                        queue_offset: None,
                        pid: None,
                    });
                }
            }
        }
        let mut ack = v5::Suback::new(s.pid, codes);
        if denied {
            ack.properties.reason_string = self.reason("not authorised to subscribe to a filter");
        }
        self.send(&v5::Packet::Suback(ack));
        for d in retained {
            self.deliver(d);
        }
        Ok(())
    }
}
