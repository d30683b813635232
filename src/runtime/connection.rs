//! Redis connections for the worker threads: opening them with timeouts, telling a lost
//! connection from a bad reply, and reconnecting with capped exponential backoff so an outage
//! stalls the worker instead of killing it. Also the small r2d2 pool the job hooks share.

use std::time::Duration;

use log::{info, warn};

use crate::ops::health::Beacon;
use crate::runtime::shutdown::{Phase, Shutdown};

/// Opens connections to one Redis URL.
#[derive(Clone)]
pub struct Connector {
    client: redis::Client,
    /// Printable URL with the password masked.
    pub display_url: String,
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
    #[error("stopped while waiting for Redis")]
    Stopped,
}

fn mask(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Is this error a lost or unusable connection (as opposed to a reply we did not like)? A Redis
/// that answers `LOADING` (restarted, still reading its AOF or RDB) ran nothing and is unavailable
/// in the same way: whatever was being written waits and is retried rather than dropped.
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
}

impl Connector {
    pub fn new(url: &str) -> Result<Self, ConnectError> {
        let client = redis::Client::open(url).map_err(|source| ConnectError::BadUrl {
            url: mask(url),
            source,
        })?;
        Ok(Connector {
            client,
            display_url: mask(url),
        })
    }

    /// One connection whose reads give up after `read_timeout` (longer than any blocking command).
    pub fn connect(&self, read_timeout: Duration) -> Result<redis::Connection, ConnectError> {
        let unreachable = |source| ConnectError::Unreachable {
            url: self.display_url.clone(),
            source,
        };
        let con = self
            .client
            .get_connection_with_timeout(Duration::from_secs(10))
            .map_err(unreachable)?;
        con.set_read_timeout(Some(read_timeout))
            .map_err(unreachable)?;
        con.set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(unreachable)?;
        Ok(con)
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
            delay = (delay * 2).min(Duration::from_secs(30));
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
                ConnectError::Stopped => redis::RedisError::from((redis::ErrorKind::Io, "stopped")),
            })
    }

    fn is_valid(&self, con: &mut redis::Connection) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query(con)
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
