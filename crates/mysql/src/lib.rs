//! The MySQL engine: record batches as rows of a MySQL-compatible server (MariaDB, MySQL).
//!
//! - `shared` model: one table, `strata_batches`, holds every shard's batches.
//! - `dedicated` model: each topic has its own table, `strata_topic_<n>`, dropped with the topic.
//!
//! A batch is one row keyed by shard number and base offset, with its last offset, largest
//! timestamp and running maximum timestamp as columns (the latter indexed, so that a timestamp
//! lookup is one index seek). Each shard's offsets and size live in `strata_shards`, updated in
//! the same transaction as its rows; an append is acknowledged after that transaction commits,
//! so it is as durable as the server makes a commit (InnoDB's
//! `innodb_flush_log_at_trx_commit`; 1, the default, fsyncs every commit).
//!
//! The schema is created and migrated by [`schema::migrate`]. When the server cannot be
//! reached, operations fail with [`StorageError::Unavailable`] naming it; the connection pool
//! reconnects by itself once the server is back. An append whose commit outcome is unknown (the
//! connection broke during COMMIT) marks its shard for a reload of its state from the server
//! before the next write, so offsets stay dense whether or not that commit landed.

pub mod schema;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, MySql, Row, Transaction};
use strata_record::Batch;
use strata_storage::{
    Appended, Bounds, Engine, EngineKind, EngineStats, LEADER_EPOCH, Maintenance, Model, Piece,
    ReadChunk, Result, ShardId, ShardNo, StorageError, StorageSpec, TimestampHit, check_batch_size,
    first_record_at_or_after,
};

/// Connections in the pool, unless configured.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct MysqlOptions {
    /// `mysql://USER:PASS@HOST:PORT/DB`.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long an operation waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
}

impl MysqlOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        MysqlOptions {
            url: url.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The connection pool and everything recovered from the server, shared by both models.
#[derive(Debug)]
pub struct MysqlDb {
    pool: MySqlPool,
    /// `host:port/db`, for messages (never the password).
    server: String,
    recovered: Mutex<ShardsByModel>,
    /// Serialises table creation and drops.
    ddl: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    commits: AtomicU64,
}

/// Shards found at open, by model, until each model's engine takes its own.
type ShardsByModel = HashMap<Model, Vec<(ShardId, Arc<Shard>)>>;

#[derive(Debug)]
struct Shard {
    no: ShardNo,
    table: Arc<str>,
    spec: Mutex<StorageSpec>,
    state: Mutex<State>,
    /// Held for a whole write transaction: one writer per shard keeps offsets dense.
    writer: tokio::sync::Mutex<()>,
    /// A write's commit outcome is unknown: reload the state before the next write.
    stale: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    log_start: u64,
    next_offset: u64,
    size: u64,
    ts_mark: i64,
}

impl State {
    fn bounds(&self) -> Bounds {
        Bounds {
            log_start: self.log_start,
            next_offset: self.next_offset,
            size_bytes: self.size,
        }
    }
}

/// One model's engine over the shared pool.
#[derive(Debug)]
pub struct MysqlEngine {
    db: Arc<MysqlDb>,
    model: Model,
    shards: RwLock<HashMap<ShardId, Arc<Shard>>>,
}

type Tx = Transaction<'static, MySql>;

impl MysqlDb {
    /// Connects, creates or migrates the schema, and loads every shard's state.
    pub async fn connect(options: MysqlOptions) -> Result<Arc<MysqlDb>> {
        let connect = MySqlConnectOptions::from_str(&options.url).map_err(|e| {
            StorageError::InvalidSpec(format!(
                "invalid MySQL URL (mysql://USER:PASS@HOST:PORT/DB): {e}"
            ))
        })?;
        let server = format!(
            "{}:{}/{}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or("")
        );
        let pool = MySqlPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| unavailable(&server, e))?;
        schema::migrate(&pool)
            .await
            .map_err(|e| StorageError::Unavailable(format!("MySQL at {server}: {e}")))?;
        let db = MysqlDb {
            pool,
            server,
            recovered: Mutex::new(HashMap::new()),
            ddl: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            commits: AtomicU64::new(0),
        };
        db.recover().await?;
        Ok(Arc::new(db))
    }

    fn err(&self, e: sqlx::Error) -> StorageError {
        unavailable(&self.server, e)
    }

    async fn recover(&self) -> Result<()> {
        let rows = sqlx::query(
            "SELECT shard_no, model, topic, part, tbl, spec, log_start, next_offset, size, ts_mark
             FROM strata_shards",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let mut recovered = ShardsByModel::new();
        for row in rows {
            let get = |e: sqlx::Error| self.err(e);
            let model: String = row.try_get("model").map_err(get)?;
            let model = model.parse::<Model>()?;
            let topic: String = row.try_get("topic").map_err(get)?;
            let id = ShardId::new(&topic, row.try_get("part").map_err(get)?)?;
            let spec: String = row.try_get("spec").map_err(get)?;
            let tbl: String = row.try_get("tbl").map_err(get)?;
            let shard = Shard {
                no: ShardNo(row.try_get("shard_no").map_err(get)?),
                table: tbl.into(),
                spec: Mutex::new(StorageSpec::from_text(&spec)?),
                state: Mutex::new(State {
                    log_start: row.try_get("log_start").map_err(get)?,
                    next_offset: row.try_get("next_offset").map_err(get)?,
                    size: row.try_get("size").map_err(get)?,
                    ts_mark: row.try_get("ts_mark").map_err(get)?,
                }),
                writer: tokio::sync::Mutex::new(()),
                stale: AtomicBool::new(false),
            };
            recovered
                .entry(model)
                .or_default()
                .push((id, Arc::new(shard)));
        }
        *self.recovered.lock() = recovered;
        Ok(())
    }

    /// The engine for one model. Each model's engine should be taken once.
    pub fn engine(self: &Arc<Self>, model: Model) -> MysqlEngine {
        let shards = self
            .recovered
            .lock()
            .remove(&model)
            .unwrap_or_default()
            .into_iter()
            .collect();
        MysqlEngine {
            db: self.clone(),
            model,
            shards: RwLock::new(shards),
        }
    }

    /// The server, as `host:port/db`.
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn begin(&self) -> Result<Tx> {
        self.pool.begin().await.map_err(|e| self.err(e))
    }

    async fn reload(&self, shard: &Shard) -> Result<()> {
        let row = sqlx::query(
            "SELECT log_start, next_offset, size, ts_mark FROM strata_shards WHERE shard_no = ?",
        )
        .bind(shard.no.get())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let get = |e: sqlx::Error| self.err(e);
        *shard.state.lock() = State {
            log_start: row.try_get(0).map_err(get)?,
            next_offset: row.try_get(1).map_err(get)?,
            size: row.try_get(2).map_err(get)?,
            ts_mark: row.try_get(3).map_err(get)?,
        };
        shard.stale.store(false, Ordering::Relaxed);
        Ok(())
    }
}

fn unavailable(server: &str, e: sqlx::Error) -> StorageError {
    match e {
        sqlx::Error::Database(db) => StorageError::Io(std::io::Error::other(format!(
            "MySQL at {server} refused a statement: {db}"
        ))),
        other => StorageError::Unavailable(format!("MySQL at {server}: {other}")),
    }
}

async fn put_state(tx: &mut Tx, no: ShardNo, s: &State) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE strata_shards SET log_start = ?, next_offset = ?, size = ?, ts_mark = ?
         WHERE shard_no = ?",
    )
    .bind(s.log_start)
    .bind(s.next_offset)
    .bind(s.size)
    .bind(s.ts_mark)
    .bind(no.get())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl MysqlEngine {
    fn shard(&self, id: &ShardId) -> Result<Arc<Shard>> {
        if self.db.closed.load(Ordering::Relaxed) {
            return Err(StorageError::Closed);
        }
        self.shards
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| StorageError::ShardNotFound(id.clone()))
    }

    fn check_spec(&self, spec: &StorageSpec) -> Result<()> {
        spec.check_held_by(EngineKind::Mysql, self.model)
    }

    fn out_of_range(id: &ShardId, offset: u64, s: &State) -> StorageError {
        StorageError::out_of_range(id, offset, s.bounds())
    }

    /// Takes the shard's write lock, reloading its state first if an earlier write's outcome
    /// is unknown.
    async fn lock_writer<'a>(&self, shard: &'a Shard) -> Result<tokio::sync::MutexGuard<'a, ()>> {
        let guard = shard.writer.lock().await;
        if shard.stale.load(Ordering::Relaxed) {
            self.db.reload(shard).await?;
        }
        Ok(guard)
    }

    /// Runs one write transaction for `shard`: `work` adds statements and returns the new
    /// state, which is stored in the same transaction and becomes visible after the commit.
    async fn commit(&self, shard: &Shard, tx: Tx, next: State) -> Result<State> {
        let mut tx = tx;
        let result = async {
            put_state(&mut tx, shard.no, &next).await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => {
                self.db.commits.fetch_add(1, Ordering::Relaxed);
                *shard.state.lock() = next;
                Ok(next)
            }
            Err(e) => {
                shard.stale.store(true, Ordering::Relaxed);
                Err(self.db.err(e))
            }
        }
    }

    /// Deletes every batch below `below` (a batch base offset or the next offset) and moves
    /// the log start to `log_start`. Returns bytes freed. The caller holds the write lock.
    async fn drop_below(&self, shard: &Shard, below: u64, log_start: u64) -> Result<u64> {
        let state = *shard.state.lock();
        if below <= state.log_start && log_start <= state.log_start {
            return Ok(0);
        }
        let table = &shard.table;
        let mut tx = self.db.begin().await?;
        let fail = |e| {
            shard.stale.store(true, Ordering::Relaxed);
            self.db.err(e)
        };
        let freed: u64 = sqlx::query(AssertSqlSafe(format!(
            "SELECT CAST(COALESCE(SUM(size), 0) AS UNSIGNED) FROM `{table}`
             WHERE shard_no = ? AND base_offset < ?"
        )))
        .bind(shard.no.get())
        .bind(below)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(fail)?;
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM `{table}` WHERE shard_no = ? AND base_offset < ?"
        )))
        .bind(shard.no.get())
        .bind(below)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let next = State {
            log_start: state.log_start.max(log_start),
            size: state.size - freed.min(state.size),
            ..state
        };
        self.commit(shard, tx, next).await?;
        Ok(freed)
    }

    /// Base offset of the first batch with an offset at or after `offset`, or `None`.
    async fn batch_at_or_after(&self, shard: &Shard, offset: u64) -> Result<Option<u64>> {
        let table = &shard.table;
        sqlx::query(AssertSqlSafe(format!(
            "SELECT base_offset FROM `{table}` WHERE shard_no = ? AND base_offset >= COALESCE(
                (SELECT MAX(base_offset) FROM `{table}` WHERE shard_no = ? AND base_offset <= ?), 0)
             AND last_offset >= ? ORDER BY base_offset LIMIT 1"
        )))
        .bind(shard.no.get())
        .bind(shard.no.get())
        .bind(offset)
        .bind(offset)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(|e| self.db.err(e))?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(|e| self.db.err(e))
    }

    /// Drops the oldest batches while `drop(last_offset, size_before)` says so.
    async fn drop_front_while(
        &self,
        shard: &Shard,
        mut drop: impl FnMut(u64, u64) -> bool + Send,
    ) -> Result<u64> {
        let table = &shard.table;
        let mut freed = 0;
        loop {
            let state = *shard.state.lock();
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT base_offset, last_offset, size FROM `{table}`
                 WHERE shard_no = ? ORDER BY base_offset LIMIT 1000"
            )))
            .bind(shard.no.get())
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.db.err(e))?;
            let mut size = state.size;
            let mut cut = None;
            let mut all = true;
            for row in &rows {
                let get = |e: sqlx::Error| self.db.err(e);
                let base: u64 = row.try_get(0).map_err(get)?;
                let last: u64 = row.try_get(1).map_err(get)?;
                let bytes: u32 = row.try_get(2).map_err(get)?;
                if !drop(last, size) {
                    cut = Some(base);
                    all = false;
                    break;
                }
                size -= u64::from(bytes).min(size);
                cut = Some(last + 1);
            }
            let Some(cut) = cut else { return Ok(freed) };
            freed += self.drop_below(shard, cut, cut).await?;
            if !all || rows.len() < 1000 {
                return Ok(freed);
            }
        }
    }
}

#[async_trait]
impl Engine for MysqlEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Mysql
    }

    fn model(&self) -> Model {
        self.model
    }

    async fn create_shard(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        self.check_spec(spec)?;
        let _ddl = self.db.ddl.lock().await;
        if self.shard(id).is_ok() {
            return Err(StorageError::ShardExists(id.clone()));
        }
        let err = |e| self.db.err(e);
        let table: String = match self.model {
            Model::Shared => schema::SHARED_TABLE.to_owned(),
            Model::Dedicated => {
                sqlx::query("INSERT IGNORE INTO strata_topics (topic) VALUES (?)")
                    .bind(id.topic())
                    .execute(&self.db.pool)
                    .await
                    .map_err(err)?;
                let no: u64 = sqlx::query("SELECT topic_no FROM strata_topics WHERE topic = ?")
                    .bind(id.topic())
                    .fetch_one(&self.db.pool)
                    .await
                    .and_then(|r| r.try_get(0))
                    .map_err(err)?;
                let table = format!("strata_topic_{no}");
                sqlx::query(AssertSqlSafe(schema::batch_table(&table)))
                    .execute(&self.db.pool)
                    .await
                    .map_err(err)?;
                table
            }
        };
        let state = State {
            log_start: 0,
            next_offset: 0,
            size: 0,
            ts_mark: i64::MIN,
        };
        let done = sqlx::query(
            "INSERT INTO strata_shards (model, topic, part, tbl, spec) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(self.model.as_str())
        .bind(id.topic())
        .bind(id.partition())
        .bind(&table)
        .bind(spec.to_text())
        .execute(&self.db.pool)
        .await
        .map_err(err)?;
        let shard = Shard {
            no: ShardNo(done.last_insert_id()),
            table: table.into(),
            spec: Mutex::new(*spec),
            state: Mutex::new(state),
            writer: tokio::sync::Mutex::new(()),
            stale: AtomicBool::new(false),
        };
        self.shards.write().insert(id.clone(), Arc::new(shard));
        Ok(())
    }

    async fn delete_shard(&self, id: &ShardId) -> Result<()> {
        let shard = self.shard(id)?;
        let _ddl = self.db.ddl.lock().await;
        let _w = shard.writer.lock().await;
        let err = |e| self.db.err(e);
        let last_of_topic = self.model == Model::Dedicated
            && !self
                .shards
                .read()
                .keys()
                .any(|other| other != id && other.topic() == id.topic());
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM strata_shards WHERE shard_no = ?")
            .bind(shard.no.get())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        if !last_of_topic {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM `{}` WHERE shard_no = ?",
                shard.table
            )))
            .bind(shard.no.get())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        self.shards.write().remove(id);
        if last_of_topic {
            sqlx::query(AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS `{}`",
                shard.table
            )))
            .execute(&self.db.pool)
            .await
            .map_err(err)?;
            sqlx::query("DELETE FROM strata_topics WHERE topic = ?")
                .bind(id.topic())
                .execute(&self.db.pool)
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    async fn reconfigure(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        self.check_spec(spec)?;
        let shard = self.shard(id)?;
        sqlx::query("UPDATE strata_shards SET spec = ? WHERE shard_no = ?")
            .bind(spec.to_text())
            .bind(shard.no.get())
            .execute(&self.db.pool)
            .await
            .map_err(|e| self.db.err(e))?;
        *shard.spec.lock() = *spec;
        Ok(())
    }

    async fn shards(&self) -> Result<Vec<(ShardId, StorageSpec)>> {
        Ok(self
            .shards
            .read()
            .iter()
            .map(|(id, s)| (id.clone(), *s.spec.lock()))
            .collect())
    }

    async fn append(&self, id: &ShardId, batch: Batch) -> Result<Appended> {
        check_batch_size(&batch)?;
        let shard = self.shard(id)?;
        let _w = self.lock_writer(&shard).await?;
        let state = *shard.state.lock();
        let base = state.next_offset;
        let last = base + u64::from(batch.record_count()) - 1;
        let max_ts = batch.max_timestamp();
        let bytes = batch.into_stored(base as i64, LEADER_EPOCH);
        let ts_mark = state.ts_mark.max(max_ts);
        let next = State {
            next_offset: last + 1,
            size: state.size + bytes.len() as u64,
            ts_mark,
            ..state
        };
        let mut tx = self.db.begin().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO `{}` (shard_no, base_offset, last_offset, max_ts, ts_mark, size, data)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            shard.table
        )))
        .bind(shard.no.get())
        .bind(base)
        .bind(last)
        .bind(max_ts)
        .bind(ts_mark)
        .bind(bytes.len() as u32)
        .bind(bytes.as_ref())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db.err(e))?;
        let state = self.commit(&shard, tx, next).await?;
        let limit = shard.spec.lock().retention.bytes;
        let log_start = match limit {
            Some(limit) if state.size > limit => {
                // Keep the newest batch even if it alone exceeds the bound.
                self.drop_front_while(&shard, |l, size| size > limit && l < last)
                    .await?;
                shard.state.lock().log_start
            }
            _ => state.log_start,
        };
        Ok(Appended {
            base_offset: base,
            last_offset: last,
            log_start,
        })
    }

    async fn read(&self, id: &ShardId, from: u64, max_bytes: usize) -> Result<ReadChunk> {
        let shard = self.shard(id)?;
        let state = *shard.state.lock();
        if from < state.log_start || from > state.next_offset {
            return Err(Self::out_of_range(id, from, &state));
        }
        let mut chunk = ReadChunk {
            bounds: state.bounds(),
            ..ReadChunk::default()
        };
        if from == state.next_offset {
            return Ok(chunk);
        }
        let err = |e| self.db.err(e);
        let table = &shard.table;
        // Sizes first, so that only the batches that fit are fetched.
        let sizes = sqlx::query(AssertSqlSafe(format!(
            "SELECT base_offset, size FROM `{table}` WHERE shard_no = ? AND base_offset >= COALESCE(
                (SELECT MAX(base_offset) FROM `{table}` WHERE shard_no = ? AND base_offset <= ?), 0)
             AND base_offset < ? ORDER BY base_offset LIMIT 1000"
        )))
        .bind(shard.no.get())
        .bind(shard.no.get())
        .bind(from)
        .bind(state.next_offset)
        .fetch_all(&self.db.pool)
        .await
        .map_err(err)?;
        let mut total = 0usize;
        let mut range: Option<(u64, u64)> = None;
        for row in &sizes {
            let base: u64 = row.try_get(0).map_err(err)?;
            let size = row.try_get::<u32, _>(1).map_err(err)? as usize;
            if range.is_some() && total + size > max_bytes {
                break;
            }
            total += size;
            range = Some((range.map_or(base, |r| r.0), base));
        }
        let Some((first, last)) = range else {
            return Ok(chunk);
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT data FROM `{table}` WHERE shard_no = ? AND base_offset BETWEEN ? AND ?
             ORDER BY base_offset"
        )))
        .bind(shard.no.get())
        .bind(first)
        .bind(last)
        .fetch_all(&self.db.pool)
        .await
        .map_err(err)?;
        for row in rows {
            let data: Vec<u8> = row.try_get(0).map_err(err)?;
            let data = Bytes::from(data);
            // The batch's own CRC guards what came over the wire from the server.
            let batch = Batch::validate(data.clone()).map_err(|e| {
                StorageError::corruption(format!("mysql table {table}"), first, e.to_string())
            })?;
            if (batch.header().last_offset() as u64) < from {
                continue;
            }
            chunk.push(Piece::Bytes(data));
        }
        Ok(chunk)
    }

    async fn bounds(&self, id: &ShardId) -> Result<Bounds> {
        Ok(self.shard(id)?.state.lock().bounds())
    }

    async fn offset_for_timestamp(&self, id: &ShardId, ts: i64) -> Result<Option<TimestampHit>> {
        let shard = self.shard(id)?;
        let state = *shard.state.lock();
        let err = |e| self.db.err(e);
        let mut after: (i64, u64) = (ts, 0);
        loop {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT ts_mark, base_offset, data FROM `{}`
                 WHERE shard_no = ? AND (ts_mark, base_offset) >= (?, ?) AND max_ts >= ?
                   AND last_offset >= ? AND base_offset < ?
                 ORDER BY ts_mark, base_offset LIMIT 16",
                shard.table
            )))
            .bind(shard.no.get())
            .bind(after.0)
            .bind(after.1)
            .bind(ts)
            .bind(state.log_start)
            .bind(state.next_offset)
            .fetch_all(&self.db.pool)
            .await
            .map_err(err)?;
            if rows.is_empty() {
                return Ok(None);
            }
            for row in &rows {
                let data: Vec<u8> = row.try_get(2).map_err(err)?;
                if let Some(hit) = first_record_at_or_after(Bytes::from(data), ts, state.log_start)?
                {
                    return Ok(Some(hit));
                }
                let mark: i64 = row.try_get(0).map_err(err)?;
                let base: u64 = row.try_get(1).map_err(err)?;
                after = (mark, base + 1);
            }
        }
    }

    async fn trim(&self, id: &ShardId, before: u64) -> Result<Bounds> {
        let shard = self.shard(id)?;
        let _w = self.lock_writer(&shard).await?;
        let state = *shard.state.lock();
        if before > state.next_offset {
            return Err(Self::out_of_range(id, before, &state));
        }
        if before > state.log_start {
            let below = self
                .batch_at_or_after(&shard, before)
                .await?
                .unwrap_or(state.next_offset);
            self.drop_below(&shard, below, before).await?;
        }
        Ok(shard.state.lock().bounds())
    }

    async fn truncate(&self, id: &ShardId, to: u64) -> Result<Bounds> {
        let shard = self.shard(id)?;
        let _w = self.lock_writer(&shard).await?;
        let state = *shard.state.lock();
        if to >= state.next_offset {
            return Ok(state.bounds());
        }
        let err = |e| {
            shard.stale.store(true, Ordering::Relaxed);
            self.db.err(e)
        };
        let cut = self
            .batch_at_or_after(&shard, to)
            .await?
            .map_or(to, |b| b.min(to));
        let table = &shard.table;
        let mut tx = self.db.begin().await?;
        let freed: u64 = sqlx::query(AssertSqlSafe(format!(
            "SELECT CAST(COALESCE(SUM(size), 0) AS UNSIGNED) FROM `{table}`
             WHERE shard_no = ? AND base_offset >= ?"
        )))
        .bind(shard.no.get())
        .bind(cut)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM `{table}` WHERE shard_no = ? AND base_offset >= ?"
        )))
        .bind(shard.no.get())
        .bind(cut)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let ts_mark: i64 = sqlx::query(AssertSqlSafe(format!(
            "SELECT COALESCE(MAX(ts_mark), -9223372036854775808) FROM `{table}` WHERE shard_no = ?"
        )))
        .bind(shard.no.get())
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
        let next = State {
            next_offset: cut,
            log_start: state.log_start.min(cut),
            size: state.size - freed.min(state.size),
            ts_mark,
        };
        Ok(self.commit(&shard, tx, next).await?.bounds())
    }

    async fn maintain(&self, now_ms: i64) -> Result<Maintenance> {
        if self.db.closed.load(Ordering::Relaxed) {
            return Err(StorageError::Closed);
        }
        let shards: Vec<_> = self.shards.read().values().cloned().collect();
        let mut report = Maintenance::default();
        for shard in shards {
            let spec = *shard.spec.lock();
            let state = *shard.state.lock();
            let expires = spec.retention.ms.is_some() && state.size > 0;
            let limit = spec.retention.bytes.unwrap_or(u64::MAX);
            if !expires && state.size <= limit {
                continue;
            }
            let _w = self.lock_writer(&shard).await?;
            if let Some(ms) = spec.retention.ms {
                // The first batch whose running maximum reaches the cutoff is the first with a
                // timestamp at or after it: everything before it has expired.
                let cutoff = now_ms.saturating_sub(ms as i64);
                let next_offset = shard.state.lock().next_offset;
                let keep: Option<u64> = sqlx::query(AssertSqlSafe(format!(
                    "SELECT base_offset FROM `{}` WHERE shard_no = ? AND ts_mark >= ?
                     ORDER BY ts_mark, base_offset LIMIT 1",
                    shard.table
                )))
                .bind(shard.no.get())
                .bind(cutoff)
                .fetch_optional(&self.db.pool)
                .await
                .and_then(|r| r.map(|r| r.try_get(0)).transpose())
                .map_err(|e| self.db.err(e))?;
                let cut = keep.unwrap_or(next_offset);
                report.bytes_dropped += self.drop_below(&shard, cut, cut).await?;
            }
            if shard.state.lock().size > limit {
                let last = shard.state.lock().next_offset.saturating_sub(1);
                report.bytes_dropped += self
                    .drop_front_while(&shard, |l, size| size > limit && l < last)
                    .await?;
            }
        }
        Ok(report)
    }

    async fn close(&self) -> Result<()> {
        if !self.db.closed.swap(true, Ordering::Relaxed) {
            self.db.pool.close().await;
        }
        Ok(())
    }

    fn stats(&self) -> EngineStats {
        let shards = self.shards.read();
        EngineStats {
            shards: shards.len() as u64,
            bytes: shards.values().map(|s| s.state.lock().size).sum(),
            open_files: 0,
            fsyncs: self.db.commits.load(Ordering::Relaxed),
            ..EngineStats::default()
        }
    }
}
