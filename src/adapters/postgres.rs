//! PostgreSQL connection pool for the ingestion jobs (`postgres` + `r2d2`).
//!
//! Takes `DATABASE_URL` as the platform writes it (SQLAlchemy's `postgresql+psycopg2://` included),
//! uses TLS (rustls, [`super::tls`]) when the URL asks for it (`sslmode=prefer`/`require` encrypt
//! without checking the certificate, as libpq does; `verify-ca`/`verify-full` check it against the
//! system's CA bundle, host name included), sets `statement_timeout` on
//! every new connection, and provides [`PgVector`] for pgvector's binary `vector` format.

use std::error::Error as StdError;
use std::time::Duration;

use ::postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use ::postgres::{Client, Config};
use bytes::{BufMut, BytesMut};
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{self, Verify};

/// A pooled connection.
pub type PgConn = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// Why the database could not be reached or configured.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid DATABASE_URL: {0}")]
    BadUrl(String),
    /// No connection within the pool's timeout; the driver's reason is part of the message.
    #[error("database unavailable: {0}")]
    Pool(r2d2::Error),
}

/// A pool sized to the worker's concurrency, shared by all job threads.
#[derive(Clone)]
pub struct PgPool {
    pool: r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("state", &self.pool.state())
            .finish()
    }
}

#[derive(Debug)]
struct SessionSetup {
    statement_timeout_ms: u64,
}

impl r2d2::CustomizeConnection<Client, ::postgres::Error> for SessionSetup {
    fn on_acquire(&self, conn: &mut Client) -> Result<(), ::postgres::Error> {
        conn.batch_execute(&format!(
            "SET statement_timeout = {}",
            self.statement_timeout_ms
        ))
    }
}

/// TLS for `sslmode` (used only when the mode asks the server for it). The connector provides
/// `tls-server-end-point` channel binding, as postgres-native-tls did, so SCRAM-SHA-256-PLUS
/// stays available.
fn tls_connector(verify: bool) -> MakeRustlsConnect {
    MakeRustlsConnect::new(tls::client_config(if verify {
        Verify::Full
    } else {
        Verify::EncryptOnly
    }))
}

/// Readiness: open a fresh connection (not one of the jobs' pooled ones, which may all be busy)
/// within `timeout` and run `SELECT 1`.
pub fn ping(url: &str, timeout: Duration) -> Result<(), String> {
    let (mut config, verify) = parse_url(url).map_err(|e| e.to_string())?;
    config.connect_timeout(timeout);
    let mut client = config
        .connect(tls_connector(verify))
        .map_err(|e| format!("unreachable ({})", describe(&e)))?;
    client
        .simple_query("SELECT 1")
        .map(|_| ())
        .map_err(|e| format!("SELECT 1 failed ({})", describe(&e)))
}

impl PgPool {
    /// Build the pool; no connection is opened until the first [`PgPool::get`].
    pub fn new(url: &str, max_size: u32, statement_timeout: Duration) -> Result<Self, PgError> {
        let (config, verify) = parse_url(url)?;
        let manager = PostgresConnectionManager::new(config, tls_connector(verify));
        let pool = r2d2::Pool::builder()
            .max_size(max_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(10))
            .test_on_check_out(true)
            .connection_customizer(Box::new(SessionSetup {
                statement_timeout_ms: u64::try_from(statement_timeout.as_millis())
                    .unwrap_or(u64::MAX),
            }))
            .build_unchecked(manager);
        Ok(PgPool { pool })
    }

    /// A connection, waiting up to 10 s for one.
    pub fn get(&self) -> Result<PgConn, PgError> {
        self.pool.get().map_err(PgError::Pool)
    }
}

/// Turn the platform's URL into a driver config; the bool says whether certificates are verified.
pub fn parse_url(url: &str) -> Result<(Config, bool), PgError> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| PgError::BadUrl("expected postgresql://...".into()))?;
    let base = scheme.split('+').next().unwrap_or(scheme);
    if base != "postgresql" && base != "postgres" {
        return Err(PgError::BadUrl(format!("unsupported scheme '{scheme}'")));
    }
    let (location, query) = match rest.split_once('?') {
        Some((l, q)) => (l, q),
        None => (rest, ""),
    };
    const PASSED: [&str; 12] = [
        "user",
        "password",
        "dbname",
        "host",
        "hostaddr",
        "port",
        "connect_timeout",
        "application_name",
        "options",
        "keepalives",
        "keepalives_idle",
        "target_session_attrs",
    ];
    let mut kept = Vec::new();
    let mut sslmode = String::from("prefer");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "sslmode" {
            sslmode = v.to_string();
        } else if PASSED.contains(&k) {
            kept.push(pair);
        } else {
            log::debug!("DATABASE_URL parameter '{k}' is not used by rq-worker");
        }
    }
    let mut driver_url = format!("postgresql://{location}");
    if !kept.is_empty() {
        driver_url.push('?');
        driver_url.push_str(&kept.join("&"));
    }
    let mut config: Config = driver_url
        .parse()
        .map_err(|e: ::postgres::Error| PgError::BadUrl(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("rq-worker");
    }
    let (mode, verify) = match sslmode.as_str() {
        "disable" | "allow" => (::postgres::config::SslMode::Disable, false),
        "prefer" => (::postgres::config::SslMode::Prefer, false),
        "require" => (::postgres::config::SslMode::Require, false),
        "verify-ca" | "verify-full" => (::postgres::config::SslMode::Require, true),
        other => return Err(PgError::BadUrl(format!("unsupported sslmode '{other}'"))),
    };
    config.ssl_mode(mode);
    Ok((config, verify))
}

/// A pgvector `vector` parameter, sent in its binary format (dim i16, unused i16, f32 big-endian).
#[derive(Debug, Clone, PartialEq)]
pub struct PgVector<'a>(pub &'a [f32]);

impl ToSql for PgVector<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let dim = i16::try_from(self.0.len())
            .map_err(|_| format!("vector of {} dimensions is too long", self.0.len()))?;
        out.reserve(4 + 4 * self.0.len());
        out.put_i16(dim);
        out.put_i16(0);
        for x in self.0 {
            out.put_f32(*x);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    to_sql_checked!();
}

/// The first line of a database error, with the server's message when there is one.
pub fn describe(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut s = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                s.push_str(": ");
                s.push_str(&cause.to_string());
                source = cause.source();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_urls_parse() {
        let (c, verify) =
            parse_url("postgresql+psycopg2://u:p%40ss@db.example.com:6543/postgres?sslmode=require&pgbouncer=true")
                .unwrap();
        assert!(!verify);
        assert_eq!(c.get_user(), Some("u"));
        assert_eq!(c.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(c.get_dbname(), Some("postgres"));
        assert_eq!(c.get_ports(), [6543]);
        assert_eq!(c.get_ssl_mode(), ::postgres::config::SslMode::Require);
        let (c, _) =
            parse_url("postgresql://postgres:postgres@localhost:5432/enterprise_rag").unwrap();
        assert_eq!(c.get_ssl_mode(), ::postgres::config::SslMode::Prefer);
        assert!(parse_url("mysql://x").is_err());
        assert!(parse_url("postgresql://h/db?sslmode=bogus").is_err());
        assert!(
            parse_url("postgresql://h/db?sslmode=verify-full")
                .unwrap()
                .1
        );
    }
}
