//! `jobs.maintenance.cleanup_stale_reservations()`: reset `tokens_reserved` to 0 on
//! `workspace_daily_usage` rows untouched for longer than `RESERVATION_TTL_SECONDS` (negative = 0),
//! on PostgreSQL or on SQLite (`DATABASE_URL=sqlite:///path`); returns the number of rows reset.

use std::time::Duration;

use crate::adapters::postgres::PgPool;
use crate::adapters::sqlite;
use crate::config::IngestConfig;
use crate::jobs::{Args, JobContext, JobError};
use crate::value::PyValue;

/// The job handler.
pub fn cleanup_stale_reservations(
    config: &IngestConfig,
    _ctx: &JobContext<'_>,
    args: Args,
) -> Result<PyValue, JobError> {
    args.finish()?;
    let ttl = config.reservation_ttl_seconds.max(0);
    let rows = match sqlite::path_from_url(&config.database_url) {
        Some(path) => {
            let path = path.map_err(|e| {
                JobError::with_source("sqlalchemy.exc.ArgumentError", e.to_string(), e)
            })?;
            cleanup_sqlite(&path, ttl)?
        }
        None => cleanup_postgres(config, ttl)?,
    };
    Ok(PyValue::from_u64(rows))
}

fn cleanup_postgres(config: &IngestConfig, ttl: i64) -> Result<u64, JobError> {
    let operational = |e: crate::adapters::postgres::PgError| {
        JobError::with_source("sqlalchemy.exc.OperationalError", e.to_string(), e)
    };
    let timeout = Duration::from_secs(config.database_statement_timeout_seconds);
    let pool = PgPool::new(&config.database_url, 1, timeout).map_err(operational)?;
    let mut conn = pool.get().map_err(operational)?;
    conn.execute(
        "UPDATE workspace_daily_usage SET tokens_reserved = 0, updated_at = NOW() \
         WHERE tokens_reserved > 0 AND updated_at < NOW() - make_interval(secs => $1::bigint)",
        &[&ttl],
    )
    .map_err(|e| {
        JobError::with_source(
            "sqlalchemy.exc.DatabaseError",
            crate::adapters::postgres::describe(&e),
            e,
        )
    })
}

fn cleanup_sqlite(path: &std::path::Path, ttl: i64) -> Result<u64, JobError> {
    let conn = sqlite::open(path)
        .map_err(|e| JobError::with_source("sqlalchemy.exc.OperationalError", e.to_string(), e))?;
    let changed = conn
        .execute(
            "UPDATE workspace_daily_usage SET tokens_reserved = 0, updated_at = CURRENT_TIMESTAMP \
             WHERE tokens_reserved > 0 AND updated_at < datetime('now', '-' || ?1 || ' seconds')",
            [ttl],
        )
        .map_err(|e| JobError::with_source("sqlalchemy.exc.OperationalError", e.to_string(), e))?;
    Ok(changed as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{CancelToken, NoHooks};

    #[test]
    fn sqlite_resets_only_stale_rows() {
        let path = std::env::temp_dir().join(format!("rqw-maint-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE workspace_daily_usage (workspace_id TEXT, date TEXT, tokens_used INTEGER, tokens_reserved INTEGER, \
               created_at DATETIME, updated_at DATETIME, PRIMARY KEY (workspace_id, date));
             INSERT INTO workspace_daily_usage VALUES ('a', '2026-01-01', 5, 10, datetime('now', '-2 hours'), datetime('now', '-2 hours'));
             INSERT INTO workspace_daily_usage VALUES ('b', '2026-01-01', 5, 10, datetime('now'), datetime('now'));
             INSERT INTO workspace_daily_usage VALUES ('c', '2026-01-01', 5, 0, datetime('now', '-2 hours'), datetime('now', '-2 hours'));",
        )
        .unwrap();
        let mut config = IngestConfig::from_env().unwrap();
        config.database_url = format!("sqlite:///{}", path.display());
        config.reservation_ttl_seconds = 600;
        let cancel = CancelToken::new();
        let ctx = JobContext {
            job_id: "j",
            func_name: "jobs.maintenance.cleanup_stale_reservations",
            queue: "q",
            worker_name: "w",
            cancel: &cancel,
            deadline: None,
            hooks: &NoHooks,
        };
        let args = Args::new(
            "jobs.maintenance.cleanup_stale_reservations",
            vec![],
            vec![],
        );
        assert_eq!(
            cleanup_stale_reservations(&config, &ctx, args).unwrap(),
            PyValue::Int(1)
        );
        let reserved: i64 = conn
            .query_row(
                "SELECT tokens_reserved FROM workspace_daily_usage WHERE workspace_id = 'a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(reserved, 0);
        let args = Args::new(
            "jobs.maintenance.cleanup_stale_reservations",
            vec![],
            vec![],
        );
        assert_eq!(
            cleanup_stale_reservations(&config, &ctx, args).unwrap(),
            PyValue::Int(0)
        );
        drop(conn);
        let _ = std::fs::remove_file(&path);
    }
}
