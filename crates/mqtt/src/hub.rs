//! Sessions, subscriptions, retained messages and routing: the state every connection shares.
//!
//! # Lock order
//!
//! Three locks are hub-wide (`parking_lot::RwLock`s, never held across an `.await`):
//! `Hub::sessions`, `Hub::subs` and `Hub::retained`. Three are per session: `Session::occupied`
//! and `Session::queue_lock` (`tokio::sync::Mutex`es, held across storage I/O) and
//! `Session::live` (a `parking_lot::Mutex`, held for a few field reads or writes only).
//! Whoever holds several takes them in this order:
//!
//! 1. `occupied` — held by a connection from attach to after its detach (`Attached::guard`);
//!    attach waits for it to take a session over, expiry only tries it;
//! 2. `queue_lock` — attach, detach and the queueing of a message for an offline session, so
//!    that a message is either sent on the live channel or queued, never lost between;
//! 3. `sessions`, then `subs`, then `retained` (all three only in [`Hub::open`]; elsewhere a
//!    hub-wide lock is taken alone, or `sessions` is read while `live` is taken below it);
//! 4. `live` last: nothing is locked while it is held.
//!
//! The async locks come before the hub-wide ones because a `parking_lot` guard cannot be held
//! across the `.await` that takes them (the futures must be `Send`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mqtt_proto::QoS;
use parking_lot::{Mutex, RwLock};
use strata_broker::Broker;
use tokio::sync::{OwnedMutexGuard, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::auth::Auth;
use crate::bridge::Bridge;
use crate::config::MqttConfig;
use crate::error::Result;
use crate::message::{Message, now_ms};
use crate::store::{SessionMeta, Store};
use crate::topic::{SubOptions, SubTree, matches};

/// Session expiry meaning "never".
pub const NEVER: u32 = u32::MAX;

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub msg: Arc<Message>,
    /// QoS of this delivery: the lower of the published and the granted QoS.
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Identifiers of the matching subscriptions (v5).
    pub sub_ids: Vec<u32>,
    /// Offset in the session's queue, when it came from there.
    pub queue_offset: Option<u64>,
    /// The packet id it was last sent with, when an earlier connection of the session sent it
    /// without seeing it acknowledged: it is sent again with that id and DUP set.
    pub pid: Option<u16>,
}

/// What a connection's outbound channel carries.
#[derive(Debug)]
pub enum Outbound {
    /// Send this message. Boxed: a channel allocates room for 32 items up front, and idle
    /// connections are many.
    Deliver(Box<Delivery>),
}

/// Live (in-memory) part of a session.
#[derive(Debug, Default)]
pub struct Live {
    /// The connected client's outbound channel.
    pub tx: Option<mpsc::Sender<Outbound>>,
    /// Which connection holds the session (increments on every attach).
    pub conn: u64,
    /// Notified when another connection takes the session over.
    pub kick: Option<Arc<tokio::sync::Notify>>,
    /// Session expiry interval in seconds (`NEVER` for a v3 persistent session).
    pub expiry: u32,
    /// Subscriptions by full filter.
    pub subs: BTreeMap<String, SubOptions>,
    /// Queue shard, once created.
    pub queue: Option<u32>,
    /// Since when the session has had no connection.
    pub offline_since: Option<Instant>,
    /// A will waiting for its delay.
    pub will_timer: Option<tokio::task::AbortHandle>,
    /// Inbound QoS 2 packet ids received but not yet released (PUBREL).
    pub awaiting_rel: HashSet<u16>,
    /// Outbound QoS 2 packet ids whose PUBREL was sent but not completed: sent again on
    /// reconnect.
    pub pubrel: Vec<u16>,
}

impl Live {
    fn meta(&self) -> SessionMeta {
        SessionMeta {
            expiry: self.expiry,
            subs: self.subs.clone(),
            queue: self.queue,
            pubrel: self.pubrel.clone(),
        }
    }
}

/// One MQTT session, connected or not.
#[derive(Debug)]
pub struct Session {
    /// Client identifier.
    pub client_id: Arc<str>,
    /// Held by the connection that owns the session, for its whole life.
    occupied: Arc<tokio::sync::Mutex<()>>,
    /// Connection, subscriptions and queue, under a short lock.
    pub live: Mutex<Live>,
    /// Serialises queue appends against attach and detach so that nothing queued is missed.
    queue_lock: tokio::sync::Mutex<()>,
}

impl Session {
    fn new(client_id: Arc<str>) -> Self {
        Session {
            client_id,
            occupied: Arc::new(tokio::sync::Mutex::new(())),
            live: Mutex::new(Live::default()),
            queue_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether messages for it outlive its connection.
    pub fn persistent(&self) -> bool {
        self.live.lock().expiry > 0
    }
}

/// A connection's hold on its session, from attach to detach.
#[derive(Debug)]
pub struct Attached {
    /// The session.
    pub session: Arc<Session>,
    /// Whether a previous session was resumed (CONNACK's session present).
    pub present: bool,
    /// Messages queued while it was offline, oldest first, to send before anything else.
    pub backlog: Vec<Delivery>,
    /// End of the queue when it was read: trimmed to once the backlog is acknowledged.
    pub backlog_end: Option<u64>,
    /// This connection's number within the session.
    pub conn: u64,
    /// PUBRELs to send again, first.
    pub pubrel: Vec<u16>,
    /// Holds the session against other connections until dropped, after detach.
    pub guard: OwnedMutexGuard<()>,
}

/// What a connection leaves unfinished when it ends.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Deliveries not completed (with the packet id they were sent with, if sent).
    pub unsent: Vec<Delivery>,
    /// QoS 2 packet ids whose PUBREL was sent but not completed.
    pub pubrel: Vec<u16>,
    /// How far the session queue may be trimmed: the client acknowledged everything of the
    /// backlog before this offset.
    pub trim_to: Option<u64>,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct HubMetrics {
    /// Open connections.
    pub connections: AtomicU64,
    /// PUBLISH packets received.
    pub messages_in: AtomicU64,
    /// PUBLISH packets sent.
    pub messages_out: AtomicU64,
    /// Deliveries dropped because a client's outbound queue was full.
    pub dropped: AtomicU64,
}

/// Everything connections share.
#[derive(Debug)]
pub struct Hub {
    /// The broker.
    pub broker: Arc<Broker>,
    /// Settings.
    pub config: MqttConfig,
    /// Users and rules.
    pub auth: Auth,
    /// Counters.
    pub metrics: HubMetrics,
    store: Store,
    bridge: Bridge,
    sessions: RwLock<HashMap<Arc<str>, Arc<Session>>>,
    subs: RwLock<SubTree>,
    retained: RwLock<HashMap<Arc<str>, Arc<Message>>>,
    /// Cancelled when the hub is dropped: stops its background tasks.
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

/// Capacity of a connection's outbound channel. A publisher finding it full waits (see
/// `SLOW_SUBSCRIBER_WAIT[_QOS]`), then drops the message for that subscriber, as Mosquitto drops
/// beyond `max_queued_messages`.
pub const OUTBOUND_CAPACITY: usize = 10_000;

/// How long a publisher waits for a full subscriber queue before a QoS 0 message is dropped
/// for that subscriber.
pub const SLOW_SUBSCRIBER_WAIT: Duration = Duration::from_millis(100);
/// The same for QoS 1 and 2, which are dropped only if the subscriber takes nothing for this
/// long (two clients publishing to each other with both queues full wait this out, then one
/// message goes).
pub const SLOW_SUBSCRIBER_WAIT_QOS: Duration = Duration::from_secs(5);

impl Hub {
    /// Opens the MQTT state: stored sessions (offline), their subscriptions and retained
    /// messages, and the storage topics the mapping rules name.
    pub async fn open(broker: Arc<Broker>, config: MqttConfig, auth: Auth) -> Result<Arc<Hub>> {
        let (store, stored, retained) = Store::open(broker.clone()).await?;
        let bridge = Bridge::open(&broker, &config.map).await?;
        let stop = CancellationToken::new();
        let hub = Arc::new(Hub {
            broker,
            auth,
            metrics: HubMetrics::default(),
            store,
            bridge,
            sessions: RwLock::new(HashMap::new()),
            subs: RwLock::new(SubTree::default()),
            retained: RwLock::new(HashMap::new()),
            stop: stop.clone(),
            _stop_on_drop: stop.drop_guard(),
            config,
        });
        {
            let mut sessions = hub.sessions.write();
            let mut tree = hub.subs.write();
            for (id, meta) in stored {
                let s = Arc::new(Session::new(id.clone()));
                for (filter, opts) in &meta.subs {
                    let (group, f) = split_shared(filter);
                    tree.insert(f, group, &id, *opts);
                }
                *s.live.lock() = Live {
                    expiry: meta.expiry,
                    subs: meta.subs,
                    queue: meta.queue,
                    pubrel: meta.pubrel,
                    offline_since: Some(Instant::now()),
                    ..Live::default()
                };
                sessions.insert(id, s);
            }
            let mut r = hub.retained.write();
            for m in retained {
                r.insert(m.topic.clone(), Arc::new(m));
            }
            tracing::info!(
                sessions = sessions.len(),
                subscriptions = tree.len(),
                retained = r.len(),
                "MQTT state restored"
            );
        }
        for rx in hub.bridge.start(&hub.broker).await? {
            hub.spawn_from_storage(rx);
        }
        let weak = Arc::downgrade(&hub);
        let stop = hub.stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let Some(hub) = weak.upgrade() else { return };
                hub.expire_sessions().await;
            }
        });
        Ok(hub)
    }

    /// Delivers what one bridge reader sends until the hub is dropped; dropping the receiver
    /// then stops the reader.
    fn spawn_from_storage(self: &Arc<Self>, mut rx: mpsc::Receiver<Arc<Message>>) {
        let weak = Arc::downgrade(self);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = rx.recv() => m,
                    _ = stop.cancelled() => None,
                };
                let Some(msg) = msg else { return };
                let Some(hub) = weak.upgrade() else { return };
                if let Err(e) = hub.publish_from_storage(msg).await {
                    tracing::error!(error = %e, "cannot deliver a stored message to MQTT subscribers");
                }
            }
        });
    }

    /// Number of sessions, connected or not.
    pub fn session_count(&self) -> usize {
        self.sessions.read().len()
    }

    /// Attaches a new connection to the session `client_id`, taking it over from any other
    /// connection, starting it afresh when `clean` is set, and reading its offline queue.
    pub async fn attach(
        &self,
        client_id: &Arc<str>,
        clean: bool,
        expiry: u32,
        tx: mpsc::Sender<Outbound>,
        kick: Arc<tokio::sync::Notify>,
    ) -> Result<Attached> {
        let session = {
            let mut sessions = self.sessions.write();
            sessions
                .entry(client_id.clone())
                .or_insert_with(|| Arc::new(Session::new(client_id.clone())))
                .clone()
        };
        // Take over: tell the holder to go, then wait for it to finish its detach.
        let old = session.live.lock().kick.take();
        if let Some(kick) = old {
            kick.notify_one();
        }
        let guard = session.occupied.clone().lock_owned().await;
        let queue_guard = session.queue_lock.lock().await;
        // The session may have been expired and removed while we waited.
        self.sessions
            .write()
            .entry(client_id.clone())
            .or_insert_with(|| session.clone());
        let (had_state, old_queue, old_subs) = {
            let mut live = session.live.lock();
            if let Some(t) = live.will_timer.take() {
                t.abort();
            }
            let had = live.offline_since.is_some() && (live.expiry > 0 || !live.subs.is_empty());
            if clean {
                let subs = std::mem::take(&mut live.subs);
                let queue = live.queue.take();
                live.awaiting_rel.clear();
                live.pubrel.clear();
                (had, queue, subs)
            } else {
                (had, None, BTreeMap::new())
            }
        };
        if clean {
            {
                let mut tree = self.subs.write();
                for filter in old_subs.keys() {
                    let (group, f) = split_shared(filter);
                    tree.remove(f, group, client_id);
                }
            }
            if had_state || old_queue.is_some() {
                self.store.delete_session(client_id, old_queue).await?;
            }
        }
        let present = !clean && had_state;
        let queue = session.live.lock().queue;
        let mut backlog = Vec::new();
        let mut backlog_end = None;
        if let Some(q) = queue {
            let (messages, end) = self.store.read_queue(q).await?;
            let now = now_ms();
            for (offset, m, pid) in messages {
                if m.expired(now) {
                    continue;
                }
                let qos = m.qos;
                backlog.push(Delivery {
                    msg: Arc::new(m),
                    qos,
                    retain: false,
                    sub_ids: Vec::new(),
                    queue_offset: Some(offset),
                    pid,
                });
            }
            backlog_end = Some(end);
        }
        let (conn, meta, pubrel) = {
            let mut live = session.live.lock();
            let pubrel = std::mem::take(&mut live.pubrel);
            live.conn += 1;
            live.tx = Some(tx);
            live.kick = Some(kick);
            live.offline_since = None;
            live.expiry = expiry;
            (live.conn, (expiry > 0).then(|| live.meta()), pubrel)
        };
        if let Some(meta) = meta {
            self.store.save_session(client_id, &meta).await?;
        }
        drop(queue_guard);
        Ok(Attached {
            session,
            present,
            backlog,
            backlog_end,
            conn,
            pubrel,
            guard,
        })
    }

    /// Detaches a connection, with what it leaves unfinished: for a persistent session its
    /// undelivered messages go back to the front of its queue.
    pub async fn detach(
        &self,
        session: &Arc<Session>,
        conn: u64,
        expiry: u32,
        left: Leftovers,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> Result<()> {
        let Leftovers {
            unsent,
            pubrel,
            trim_to,
        } = left;
        let _q = session.queue_lock.lock().await;
        let (persistent, queue) = {
            let mut live = session.live.lock();
            if live.conn != conn {
                return Ok(());
            }
            live.tx = None;
            live.kick = None;
            live.offline_since = Some(Instant::now());
            live.expiry = expiry;
            live.pubrel = pubrel;
            (expiry > 0, live.queue)
        };
        if !persistent {
            self.remove_session(session).await;
            return Ok(());
        }
        // Backlog messages at or after `trim_to` are still in the queue; everything else the
        // client did not complete goes back to it.
        let mut keep: Vec<(Arc<Message>, Option<u16>)> = Vec::new();
        for d in unsent {
            if d.queue_offset.is_none() && d.qos != QoS::Level0 {
                keep.push((d.msg, d.pid));
            }
        }
        while let Ok(o) = rx.try_recv() {
            let Outbound::Deliver(d) = o;
            if d.qos != QoS::Level0 {
                keep.push((d.msg, None));
            }
        }
        if let (Some(q), Some(to)) = (queue, trim_to) {
            self.store.trim(q, to).await?;
        }
        if !keep.is_empty() {
            let q = self.queue_of(session).await?;
            self.store.append(q, &keep).await?;
        }
        let meta = session.live.lock().meta();
        self.store.save_session(&session.client_id, &meta).await?;
        Ok(())
    }

    async fn queue_of(&self, session: &Session) -> Result<u32> {
        if let Some(q) = session.live.lock().queue {
            return Ok(q);
        }
        let q = self.store.create_queue().await?;
        let meta = {
            let mut live = session.live.lock();
            live.queue = Some(q);
            live.meta()
        };
        self.store.save_session(&session.client_id, &meta).await?;
        Ok(q)
    }

    /// Trims a session's queue before `offset` once its backlog is acknowledged.
    pub async fn trim_queue(&self, session: &Session, offset: u64) {
        let queue = session.live.lock().queue;
        if let Some(q) = queue
            && let Err(e) = self.store.trim(q, offset).await
        {
            tracing::warn!(client_id = %session.client_id, error = %e, "cannot trim the session queue");
        }
    }

    async fn remove_session(&self, session: &Arc<Session>) {
        // A pending will is left to fire: it was scheduled for no later than the session's end.
        let (subs, queue, had_meta) = {
            let mut live = session.live.lock();
            (
                std::mem::take(&mut live.subs),
                live.queue.take(),
                live.expiry > 0,
            )
        };
        {
            let mut tree = self.subs.write();
            for filter in subs.keys() {
                let (group, f) = split_shared(filter);
                tree.remove(f, group, &session.client_id);
            }
        }
        {
            let mut sessions = self.sessions.write();
            if sessions
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.client_id);
            }
        }
        if (had_meta || queue.is_some())
            && let Err(e) = self.store.delete_session(&session.client_id, queue).await
        {
            tracing::warn!(client_id = %session.client_id, error = %e, "cannot delete the stored session");
        }
    }

    async fn expire_sessions(&self) {
        let expired: Vec<Arc<Session>> = self
            .sessions
            .read()
            .values()
            .filter(|s| {
                let live = s.live.lock();
                match live.offline_since {
                    Some(since) if live.expiry != NEVER => {
                        since.elapsed() >= Duration::from_secs(u64::from(live.expiry))
                    }
                    _ => false,
                }
            })
            .cloned()
            .collect();
        for s in expired {
            // Not if a connection is attaching right now.
            let Ok(_g) = s.occupied.clone().try_lock_owned() else {
                continue;
            };
            if s.live.lock().offline_since.is_none() {
                continue;
            }
            tracing::debug!(client_id = %s.client_id, "session expired");
            self.remove_session(&s).await;
        }
    }

    /// Adds or replaces a subscription; returns whether it existed. Persists the session.
    pub async fn subscribe(
        &self,
        session: &Session,
        filter: &str,
        opts: SubOptions,
    ) -> Result<bool> {
        let (group, f) = split_shared(filter);
        let existed = self.subs.write().insert(f, group, &session.client_id, opts);
        let meta = {
            let mut live = session.live.lock();
            live.subs.insert(filter.to_owned(), opts);
            (live.expiry > 0).then(|| live.meta())
        };
        if let Some(meta) = meta {
            self.store.save_session(&session.client_id, &meta).await?;
        }
        Ok(existed)
    }

    /// Removes a subscription; returns whether it existed. Persists the session.
    pub async fn unsubscribe(&self, session: &Session, filter: &str) -> Result<bool> {
        let (group, f) = split_shared(filter);
        let existed = self.subs.write().remove(f, group, &session.client_id);
        let meta = {
            let mut live = session.live.lock();
            live.subs.remove(filter);
            (live.expiry > 0).then(|| live.meta())
        };
        if let Some(meta) = meta {
            self.store.save_session(&session.client_id, &meta).await?;
        }
        Ok(existed)
    }

    /// Retained messages matching `filter`, live ones only.
    pub fn retained_for(&self, filter: &str) -> Vec<Arc<Message>> {
        let now = now_ms();
        self.retained
            .read()
            .values()
            .filter(|m| matches(filter, &m.topic) && !m.expired(now))
            .cloned()
            .collect()
    }

    /// Publishes a message from an MQTT client: delivers it to online subscribers at once,
    /// then stores what must be stored (retained message, mapped storage topic, offline
    /// session queues). Returns when all of that is durable.
    pub async fn publish(&self, msg: Arc<Message>) -> Result<()> {
        self.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
        let (offline, blocked) = self.route(&msg);
        self.wait_for_slow(blocked).await;
        if msg.retain {
            if msg.payload.is_empty() {
                let had = self.retained.write().remove(&msg.topic).is_some();
                if had {
                    self.store.set_retained(&msg.topic, None).await?;
                }
            } else {
                self.retained.write().insert(msg.topic.clone(), msg.clone());
                self.store.set_retained(&msg.topic, Some(&msg)).await?;
            }
        }
        self.bridge.persist(&self.broker, &msg).await?;
        self.queue_offline(offline).await
    }

    /// Delivers a message that came from storage (a Kafka producer) to MQTT subscribers.
    pub async fn publish_from_storage(&self, msg: Arc<Message>) -> Result<()> {
        let (offline, blocked) = self.route(&msg);
        self.wait_for_slow(blocked).await;
        self.queue_offline(offline).await
    }

    /// Waits, up to `SLOW_SUBSCRIBER_WAIT` (QoS 0) or `SLOW_SUBSCRIBER_WAIT_QOS` (QoS 1, 2)
    /// each, for room in the outbound queues that were full, so that a slow subscriber slows
    /// its publishers down (as TCP would) rather than losing messages; past the wait the
    /// message is dropped for that subscriber.
    async fn wait_for_slow(&self, blocked: Vec<(mpsc::Sender<Outbound>, Box<Delivery>)>) {
        for (tx, d) in blocked {
            let wait = if d.qos == QoS::Level0 {
                SLOW_SUBSCRIBER_WAIT
            } else {
                SLOW_SUBSCRIBER_WAIT_QOS
            };
            match tokio::time::timeout(wait, tx.send(Outbound::Deliver(d))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {}
                Err(_) => {
                    self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("subscriber too slow; message dropped");
                }
            }
        }
    }

    async fn queue_offline(&self, offline: Vec<(Arc<Session>, Delivery)>) -> Result<()> {
        for (session, d) in offline {
            let _q = session.queue_lock.lock().await;
            // It may have come online while this waited.
            let tx = session.live.lock().tx.clone();
            if let Some(tx) = tx {
                self.wait_for_slow(vec![(tx, Box::new(d))]).await;
                continue;
            }
            if !session.persistent() {
                continue;
            }
            let q = self.queue_of(&session).await?;
            self.store.append(q, &[(d.msg, None)]).await?;
        }
        Ok(())
    }

    /// Hands the message to every matching online session; returns the QoS 1 and 2
    /// deliveries for offline persistent sessions, to be queued.
    /// Deliveries whose online session's queue was full come back as `blocked`.
    #[allow(clippy::type_complexity)]
    fn route(
        &self,
        msg: &Arc<Message>,
    ) -> (
        Vec<(Arc<Session>, Delivery)>,
        Vec<(mpsc::Sender<Outbound>, Box<Delivery>)>,
    ) {
        let matches = self.subs.read().matches(&msg.topic);
        if matches.direct.is_empty() && matches.shared.is_empty() {
            return (Vec::new(), Vec::new());
        }
        // One delivery per client: the highest granted QoS, every subscription identifier.
        let mut targets = Targets::with_capacity(matches.direct.len());
        for (client, opts) in matches.direct {
            if opts.no_local && msg.origin.as_ref() == Some(&client) {
                continue;
            }
            targets.merge(client, opts);
        }
        let sessions = self.sessions.read();
        for pick in matches.shared {
            let n = pick.members.len();
            let chosen = (0..n)
                .map(|i| &pick.members[(pick.start + i) % n])
                .find(|(c, _)| sessions.get(c).is_some_and(|s| s.live.lock().tx.is_some()))
                .unwrap_or(&pick.members[pick.start % n]);
            targets.merge(chosen.0.clone(), chosen.1);
        }
        let mut offline = Vec::new();
        let mut blocked = Vec::new();
        for (client, qos, rap, sub_ids) in targets.list {
            let Some(session) = sessions.get(&client) else {
                continue;
            };
            let qos = QoS::from_u8(qos.min(msg.qos as u8)).unwrap_or(QoS::Level0);
            let d = Delivery {
                msg: msg.clone(),
                qos,
                retain: rap && msg.retain,
                sub_ids,
                queue_offset: None,
                pid: None,
            };
            let tx = session.live.lock().tx.clone();
            if let Some(tx) = tx {
                if let Err(mpsc::error::TrySendError::Full(Outbound::Deliver(d))) =
                    tx.try_send(Outbound::Deliver(Box::new(d)))
                {
                    blocked.push((tx, d));
                }
            } else if qos != QoS::Level0 {
                offline.push((session.clone(), d));
            }
        }
        (offline, blocked)
    }

    /// Publishes a will after its delay, unless the session is resumed first.
    pub fn schedule_will(
        self: &Arc<Self>,
        session: &Arc<Session>,
        conn: u64,
        will: Arc<Message>,
        delay: u32,
    ) {
        let publish = {
            let hub = self.clone();
            let session = session.clone();
            async move {
                if delay > 0 {
                    tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
                }
                {
                    let mut live = session.live.lock();
                    if live.conn != conn || live.tx.is_some() {
                        return;
                    }
                    live.will_timer = None;
                }
                tracing::debug!(client_id = %session.client_id, topic = %will.topic, "publishing will");
                if let Err(e) = hub.publish(will).await {
                    tracing::warn!(error = %e, "cannot publish a will");
                }
            }
        };
        if delay == 0 {
            tokio::spawn(publish);
        } else {
            let handle = tokio::spawn(publish).abort_handle();
            session.live.lock().will_timer = Some(handle);
        }
    }
}

/// One delivery per client: (client, highest granted QoS, retain as published, subscription
/// identifiers). Clients are found by a linear scan while few, by an index once many, so that
/// a topic with thousands of subscribers does not cost a scan per subscriber.
struct Targets {
    list: Vec<(Arc<str>, u8, bool, Vec<u32>)>,
    index: Option<HashMap<Arc<str>, usize>>,
}

impl Targets {
    /// Past this many clients the index is built.
    const SCAN: usize = 8;

    fn with_capacity(n: usize) -> Self {
        Targets {
            list: Vec::with_capacity(n),
            index: None,
        }
    }

    fn position(&mut self, client: &Arc<str>) -> Option<usize> {
        if self.index.is_none() && self.list.len() > Self::SCAN {
            self.index = Some(
                self.list
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.0.clone(), i))
                    .collect(),
            );
        }
        match &self.index {
            Some(index) => index.get(client).copied(),
            None => self.list.iter().position(|t| t.0 == *client),
        }
    }

    fn merge(&mut self, client: Arc<str>, opts: SubOptions) {
        if let Some(i) = self.position(&client) {
            let t = &mut self.list[i];
            t.1 = t.1.max(opts.qos);
            t.2 |= opts.retain_as_published;
            if let Some(id) = opts.id {
                t.3.push(id);
            }
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(client.clone(), self.list.len());
        }
        self.list.push((
            client,
            opts.qos,
            opts.retain_as_published,
            opts.id.into_iter().collect(),
        ));
    }
}

/// Splits `$share/<group>/<filter>` into its group and filter.
pub fn split_shared(filter: &str) -> (Option<&str>, &str) {
    if let Some(rest) = filter.strip_prefix("$share/")
        && let Some((group, f)) = rest.split_once('/')
    {
        return (Some(group), f);
    }
    (None, filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(qos: u8, id: u32) -> SubOptions {
        SubOptions {
            qos,
            no_local: false,
            retain_as_published: qos == 1,
            retain_handling: 0,
            id: Some(id),
        }
    }

    #[test]
    fn targets_keep_one_entry_per_client_by_scan_and_by_index() {
        for clients in [3usize, 50] {
            let mut t = Targets::with_capacity(0);
            for round in 0..2u8 {
                for i in 0..clients {
                    t.merge(
                        Arc::from(format!("c{i}")),
                        opts(round, u32::from(round) + 1),
                    );
                }
            }
            assert_eq!(t.list.len(), clients);
            for (i, (client, qos, rap, ids)) in t.list.iter().enumerate() {
                assert_eq!(&**client, format!("c{i}"));
                assert_eq!((*qos, *rap), (1, true));
                assert_eq!(ids, &[1, 2]);
            }
        }
    }
}
