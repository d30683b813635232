//! Redis connections for the worker threads: opening them with timeouts, telling a lost
//! connection from a bad reply, and reconnecting with capped exponential backoff so an outage
//! stalls the worker instead of killing it. Also the small r2d2 pool the job hooks share.
//!
//! Every connection the process opens comes from a [`Connector`]: to one Redis URL, or, with
//! Sentinel, to whichever server the sentinels name as master at that (re)connect.

use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use crate::config::SentinelOptions;
use crate::ops::health::Beacon;
use crate::runtime::sentinel::{self, MasterFinder, SentinelArgs, SentinelConfig};
use crate::runtime::shutdown::{Phase, Shutdown};

/// Opens connections to one Redis URL, or to the master the sentinels name.
#[derive(Clone)]
pub struct Connector {
    target: Target,
    /// Printable URL with the password masked.
    pub display_url: String,
}

#[derive(Clone)]
enum Target {
    Direct(Box<redis::Client>),
    Sentinel(Arc<MasterFinder>),
}

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid Redis URL {url}")]
    BadUrl {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot connect to Redis at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("invalid Redis Sentinel settings: {0}")]
    BadSentinel(String),
    #[error("cannot reach the Redis master through the sentinels at {url}")]
    NoMaster {
        url: String,
        #[source]
        source: sentinel::NoMaster,
    },
    #[error("stopped while waiting for Redis")]
    Stopped,
}

fn mask(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Is this error a lost or unusable connection (as opposed to a reply we did not like)?
///
/// A server that is no longer the master counts as lost: `READONLY` (a write reached a replica,
/// e.g. a demoted master), `MASTERDOWN` (a replica that lost its master), `UNBLOCKED` (a blocking
/// command cut short because the server changed role). None of them ran the command; the caller
/// reconnects, which with Sentinel finds the new master. A Redis that answers `LOADING`
/// (restarted, still reading its AOF or RDB) ran nothing and is unavailable in the same way:
/// whatever was being written waits and is retried rather than dropped.
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
            )
        )
        || e.code() == Some("UNBLOCKED")
}

/// Whether the server on `con` takes writes: `ROLE` must say master. A replica (a worker
/// pointed at one, or a master demoted by a failover) is refused with a READONLY error, so that
/// the reconnect loop backs off (and, with Sentinel, asks again) instead of spinning on READONLY
/// replies. A server that does not answer ROLE (a proxy, an ACL without it) is trusted.
pub fn check_master(con: &mut redis::Connection) -> redis::RedisResult<()> {
    let reply: redis::RedisResult<redis::Value> = redis::cmd("ROLE").query(con);
    let role = match reply {
        Ok(redis::Value::Array(items)) => items
            .first()
            .and_then(|f| redis::from_redis_value_ref::<String>(f).ok()),
        Ok(_) => None,
        Err(e) if is_connection_error(&e) => return Err(e),
        Err(_) => None,
    };
    match role.as_deref() {
        None | Some("master") => Ok(()),
        Some(r) => Err(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "not a master",
            format!("ROLE says {r}"),
        ))),
    }
}

/// A connection with read and write timeouts.
fn open(
    info: redis::ConnectionInfo,
    read_timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(info)?;
    open_client(&client, read_timeout)
}

fn open_client(
    client: &redis::Client,
    read_timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    let con = client.get_connection_with_timeout(Duration::from_secs(10))?;
    con.set_read_timeout(Some(read_timeout))?;
    con.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(con)
}

impl Connector {
    pub fn new(url: &str) -> Result<Self, ConnectError> {
        let client = redis::Client::open(url).map_err(|source| ConnectError::BadUrl {
            url: mask(url),
            source,
        })?;
        Ok(Connector {
            target: Target::Direct(Box::new(client)),
            display_url: mask(url),
        })
    }

    /// From `--url` and the Sentinel options: Sentinel when `--sentinel` or a
    /// `redis+sentinel://` URL is given, else the URL itself.
    pub fn configure(url: &str, opts: &SentinelOptions) -> Result<Self, ConnectError> {
        let args = SentinelArgs {
            url,
            sentinel: opts.sentinel.as_deref(),
            master_name: &opts.sentinel_master,
            username: opts.sentinel_username.as_deref(),
            password: opts.sentinel_password.as_deref(),
            tls: opts.sentinel_tls,
        };
        match SentinelConfig::from_args(&args).map_err(ConnectError::BadSentinel)? {
            None => Self::new(url),
            Some(config) => Ok(Connector {
                display_url: config.display(),
                target: Target::Sentinel(Arc::new(MasterFinder::new(config))),
            }),
        }
    }

    /// One connection whose reads give up after `read_timeout` (longer than any blocking command).
    pub fn connect(&self, read_timeout: Duration) -> Result<redis::Connection, ConnectError> {
        match &self.target {
            Target::Direct(client) => open_client(client, read_timeout)
                .and_then(|mut con| check_master(&mut con).map(|()| con))
                .map_err(|source| ConnectError::Unreachable {
                    url: self.display_url.clone(),
                    source,
                }),
            Target::Sentinel(finder) => finder
                .connect(|info| {
                    let mut con = open(info, read_timeout)?;
                    check_master(&mut con)?;
                    Ok(con)
                })
                .map_err(|source| ConnectError::NoMaster {
                    url: self.display_url.clone(),
                    source,
                }),
        }
    }

    /// The longest wait between reconnect attempts, for a retry loop whose own cap is `cap`:
    /// that cap to one server; at most 2 s with Sentinel, where an attempt is a cheap question to
    /// the sentinels and the new master should be found soon after a failover.
    pub fn backoff_cap(&self, cap: Duration) -> Duration {
        match self.target {
            Target::Direct(_) => cap,
            Target::Sentinel(_) => cap.min(Duration::from_secs(2)),
        }
    }

    /// Connect, retrying with capped exponential backoff until it works or the process reaches
    /// `give_up_at`.
    pub fn connect_retrying(
        &self,
        read_timeout: Duration,
        shutdown: &Shutdown,
        give_up_at: Phase,
        who: &str,
        beacon: Option<&Beacon>,
    ) -> Result<redis::Connection, ConnectError> {
        let mut delay = Duration::from_millis(250);
        let mut attempts = 0u32;
        loop {
            if let Some(b) = beacon {
                // One attempt (10 s to connect, then the handshake) and one backoff sleep.
                b.alive_for(
                    Duration::from_secs(10) + read_timeout + delay + Duration::from_secs(10),
                );
            }
            match self.connect(read_timeout) {
                Ok(con) => {
                    if attempts > 0 {
                        info!(
                            "{who}: reconnected to Redis at {} after {attempts} attempt(s)",
                            self.display_url
                        );
                    }
                    return Ok(con);
                }
                Err(e) => {
                    attempts += 1;
                    if attempts == 1 || attempts.is_power_of_two() {
                        warn!(
                            "{who}: Redis unavailable ({e}: {}); retrying in {delay:?}",
                            source_text(&e)
                        );
                    }
                }
            }
            if shutdown.sleep(delay, give_up_at) >= give_up_at {
                return Err(ConnectError::Stopped);
            }
            delay = (delay * 2).min(self.backoff_cap(Duration::from_secs(30)));
        }
    }

    /// A pool of short-lived-command connections (job hooks).
    pub fn pool(&self, size: u32) -> Result<r2d2::Pool<PooledManager>, ConnectError> {
        Ok(r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(10))
            .build_unchecked(PooledManager {
                connector: self.clone(),
            }))
    }
}

fn source_text(e: &ConnectError) -> String {
    use std::error::Error;
    e.source().map(|s| s.to_string()).unwrap_or_default()
}

/// r2d2 manager that opens connections with read/write timeouts.
pub struct PooledManager {
    connector: Connector,
}

impl r2d2::ManageConnection for PooledManager {
    type Connection = redis::Connection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<redis::Connection, redis::RedisError> {
        self.connector
            .connect(Duration::from_secs(30))
            .map_err(|e| match e {
                ConnectError::BadUrl { source, .. } | ConnectError::Unreachable { source, .. } => {
                    source
                }
                e @ (ConnectError::BadSentinel(_)
                | ConnectError::NoMaster { .. }
                | ConnectError::Stopped) => redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no connection",
                    format!("{e}: {}", source_text(&e)),
                )),
            })
    }

    /// A pooled connection must still reach a master: a demoted one answers PING but not writes.
    fn is_valid(&self, con: &mut redis::Connection) -> Result<(), redis::RedisError> {
        check_master(con)
    }

    fn has_broken(&self, con: &mut redis::Connection) -> bool {
        !redis::ConnectionLike::is_open(con)
    }
}

#[cfg(test)]
mod tests {
    use super::is_connection_error;
    use redis::{ErrorKind, RedisError, ServerErrorKind};

    #[test]
    fn loading_redis_counts_as_unavailable() {
        let loading = RedisError::from((
            ErrorKind::Server(ServerErrorKind::BusyLoading),
            "Redis is loading the dataset in memory",
        ));
        assert!(is_connection_error(&loading));
        let bad_reply = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "ERR wrong number of arguments",
        ));
        assert!(!is_connection_error(&bad_reply));
    }
}
