//! The schema Strata creates and migrates itself; described in docs/format/mysql.md.

use sqlx::{AssertSqlSafe, MySqlPool, Row};

/// The schema version this build writes.
pub const VERSION: u32 = 1;

/// Table holding every `shared`-model shard's batches.
pub const SHARED_TABLE: &str = "strata_batches";

/// Statements that bring a schema from version `i` to `i + 1`, in order (version 1 also creates
/// the shared batch table, [`batch_table`]).
const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE IF NOT EXISTS strata_shards (
        shard_no BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        model VARCHAR(16) CHARACTER SET ascii NOT NULL,
        topic VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        part INT UNSIGNED NOT NULL,
        tbl VARCHAR(64) CHARACTER SET ascii NOT NULL,
        spec TEXT NOT NULL,
        log_start BIGINT UNSIGNED NOT NULL DEFAULT 0,
        next_offset BIGINT UNSIGNED NOT NULL DEFAULT 0,
        size BIGINT UNSIGNED NOT NULL DEFAULT 0,
        ts_mark BIGINT NOT NULL DEFAULT -9223372036854775808,
        UNIQUE KEY by_name (model, topic, part)
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS strata_topics (
        topic_no BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        topic VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        UNIQUE KEY by_name (topic)
    ) ENGINE=InnoDB",
]];

/// `CREATE TABLE` for a dedicated topic's batch table.
pub fn batch_table(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{name}` (
            shard_no BIGINT UNSIGNED NOT NULL,
            base_offset BIGINT UNSIGNED NOT NULL,
            last_offset BIGINT UNSIGNED NOT NULL,
            max_ts BIGINT NOT NULL,
            ts_mark BIGINT NOT NULL,
            size INT UNSIGNED NOT NULL,
            data LONGBLOB NOT NULL,
            PRIMARY KEY (shard_no, base_offset),
            KEY by_time (shard_no, ts_mark, base_offset)
        ) ENGINE=InnoDB"
    )
}

/// Creates the schema or migrates it to [`VERSION`]. Refuses a schema newer than this build.
pub async fn migrate(pool: &MySqlPool) -> Result<u32, String> {
    let e = |e: sqlx::Error| e.to_string();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS strata_schema (version INT UNSIGNED NOT NULL) ENGINE=InnoDB",
    )
    .execute(pool)
    .await
    .map_err(e)?;
    let mut conn = pool.acquire().await.map_err(e)?;
    // One node migrates at a time; others wait for the lock.
    sqlx::query("SELECT GET_LOCK('strata_schema', 60)")
        .execute(&mut *conn)
        .await
        .map_err(e)?;
    let result = async {
        let current: u32 = match sqlx::query("SELECT version FROM strata_schema")
            .fetch_optional(&mut *conn)
            .await
            .map_err(e)?
        {
            Some(row) => row.try_get(0).map_err(e)?,
            None => {
                sqlx::query("INSERT INTO strata_schema (version) VALUES (0)")
                    .execute(&mut *conn)
                    .await
                    .map_err(e)?;
                0
            }
        };
        if current > VERSION {
            return Err(format!(
                "the database holds schema version {current}, newer than this build's {VERSION}; \
                 upgrade Strata"
            ));
        }
        for (i, statements) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let mut statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
            if i == 0 {
                // The shared table has the same columns as every dedicated one.
                statements.push(batch_table(SHARED_TABLE));
            }
            for statement in statements {
                sqlx::query(AssertSqlSafe(statement))
                    .execute(&mut *conn)
                    .await
                    .map_err(e)?;
            }
            sqlx::query("UPDATE strata_schema SET version = ?")
                .bind(i as u32 + 1)
                .execute(&mut *conn)
                .await
                .map_err(e)?;
            tracing::info!(version = i + 1, "MySQL schema migrated");
        }
        Ok(VERSION)
    }
    .await;
    let _ = sqlx::query("SELECT RELEASE_LOCK('strata_schema')")
        .execute(&mut *conn)
        .await;
    result
}
