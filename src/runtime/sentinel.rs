//! Redis Sentinel: where the master is. Each (re)connect asks the sentinels in turn for the
//! master's address, connects to it and checks with `ROLE` that it really is a master (a sentinel
//! may still name a master that was just demoted), so the worker follows a failover through its
//! ordinary reconnects. Also the two ways of configuring it: `--sentinel HOST:PORT,...` with the
//! master's credentials, db and TLS taken from `--url`, or one `redis+sentinel://` URL.
//!
//! The redis crate's `sentinel` feature is not used: its blocking lookup connects to sentinels
//! and to the named master without timeouts and gives up at the first unreachable master a
//! sentinel names; this lookup is one command per sentinel with short timeouts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use log::{info, warn};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// Sentinels' default port, as in RQ's `SENTINEL` settings (`('localhost', 26379)`).
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// How long one sentinel may take to accept a connection and to answer.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(3);

/// How to reach the sentinels and what to ask them.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// The sentinels, asked in this order (the last one that answered first).
    pub sentinels: Vec<(String, u16)>,
    /// The monitored master's service name (`sentinel monitor NAME ...`).
    pub master_name: String,
    /// The master's connection settings (TLS, user, password, db); its address is replaced by
    /// the one the sentinels name.
    pub master: ConnectionInfo,
    /// User and password for the sentinels themselves.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    /// Talk TLS to the sentinels.
    pub sentinel_tls: bool,
}

/// Options as given on the command line (see `config::SentinelOptions`).
pub struct SentinelArgs<'a> {
    pub url: &'a str,
    pub sentinel: Option<&'a str>,
    pub master_name: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub tls: bool,
}

/// Is this URL the Sentinel form (`redis+sentinel://`, `rediss+sentinel://`)?
pub fn is_sentinel_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("redis+sentinel://") || lower.starts_with("rediss+sentinel://")
}

/// `host:port[,host:port...]`; a missing port is 26379, IPv6 hosts in brackets.
pub fn parse_sentinel_list(list: &str) -> Result<Vec<(String, u16)>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, port) = match item.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && (!h.starts_with('[') || h.ends_with(']')) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("bad port in sentinel address {item:?}"))?;
                (h, port)
            }
            _ => (item, DEFAULT_SENTINEL_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("no host in sentinel address {item:?}"));
        }
        out.push((host.to_string(), port));
    }
    if out.is_empty() {
        return Err("no sentinel address given".into());
    }
    Ok(out)
}

/// The master's settings from a redis:// or rediss:// URL: its host and port are not used.
fn master_template(url: &str) -> Result<ConnectionInfo, String> {
    let info = url
        .into_connection_info()
        .map_err(|e| format!("invalid Redis URL for the master's settings: {e}"))?;
    match info.addr() {
        ConnectionAddr::Unix(_) => Err(
            "a unix:// URL cannot name a master found through Sentinel; use redis:// or rediss:// \
             (its host and port are not used)"
                .into(),
        ),
        _ => Ok(info),
    }
}

/// What a `redis+sentinel://` URL says.
struct SentinelUrl {
    sentinels: Vec<(String, u16)>,
    master_name: String,
    master: ConnectionInfo,
    tls: bool,
}

/// `redis+sentinel://[[user]:password@]host:port[,host:port...]/master_name[/db]`; the
/// password is the master's; `rediss+sentinel://` is TLS to the master and the sentinels.
fn parse_sentinel_url(url: &str) -> Result<SentinelUrl, String> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "not a redis+sentinel:// URL".to_string())?;
    let tls = scheme.eq_ignore_ascii_case("rediss+sentinel");
    if rest.contains('?') || rest.contains('#') {
        return Err(
            "a redis+sentinel:// URL takes no query or fragment (sentinel options are flags)"
                .into(),
        );
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let sentinels = parse_sentinel_list(hosts)?;
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let master = parts
        .next()
        .ok_or_else(|| "a redis+sentinel:// URL needs the master name as its path".to_string())?;
    let db = match parts.next() {
        Some(d) => d
            .parse::<i64>()
            .map_err(|_| format!("bad db {d:?} in the redis+sentinel:// URL"))?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err("a redis+sentinel:// URL's path is /master_name[/db]".into());
    }
    // Let the redis crate decode the credentials (percent-encoding) as it does for --url.
    let template = format!(
        "{}://{}{}/{db}",
        if tls { "rediss" } else { "redis" },
        userinfo.map(|u| format!("{u}@")).unwrap_or_default(),
        "sentinel-master"
    );
    Ok(SentinelUrl {
        sentinels,
        master_name: master.to_string(),
        master: master_template(&template)?,
        tls,
    })
}

impl SentinelConfig {
    /// The Sentinel settings, if any: from `--sentinel` (the master's settings from `--url`) or a
    /// `redis+sentinel://` URL. `Ok(None)` for a plain Redis URL without `--sentinel`.
    pub fn from_args(a: &SentinelArgs<'_>) -> Result<Option<SentinelConfig>, String> {
        let given = a.sentinel.map(str::trim).filter(|s| !s.is_empty());
        let (sentinels, master_name, master, url_tls) = match (given, is_sentinel_url(a.url)) {
            (Some(_), true) => {
                return Err("give either --sentinel or a redis+sentinel:// URL, not both".into());
            }
            (None, false) => return Ok(None),
            (None, true) => {
                let u = parse_sentinel_url(a.url)?;
                (u.sentinels, u.master_name, u.master, u.tls)
            }
            (Some(list), false) => (
                parse_sentinel_list(list)?,
                a.master_name.trim().to_string(),
                master_template(a.url)?,
                false,
            ),
        };
        if master_name.is_empty() {
            return Err("the Sentinel master name is empty".into());
        }
        Ok(Some(SentinelConfig {
            sentinels,
            master_name,
            master,
            sentinel_username: a.username.filter(|u| !u.is_empty()).map(String::from),
            sentinel_password: a.password.filter(|p| !p.is_empty()).map(String::from),
            sentinel_tls: a.tls || url_tls,
        }))
    }

    /// For logs: the sentinels and the master name, no secrets.
    pub fn display(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect();
        let tls = matches!(self.master.addr(), ConnectionAddr::TcpTls { .. });
        format!(
            "redis{}+sentinel://{}{}/{}/{}",
            if tls { "s" } else { "" },
            if self.master.redis_settings().password().is_some() {
                "***@"
            } else {
                ""
            },
            hosts.join(","),
            self.master_name,
            self.master.redis_settings().db()
        )
    }

    fn sentinel_info(&self, host: &str, port: u16) -> redis::RedisResult<ConnectionInfo> {
        let addr = if self.sentinel_tls {
            ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_string(), port)
        };
        let mut redis = RedisConnectionInfo::default();
        if let Some(u) = &self.sentinel_username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &self.sentinel_password {
            redis = redis.set_password(p);
        }
        // A sentinel has no database to SELECT; only the handshake settings matter.
        Ok(addr.into_connection_info()?.set_redis_settings(redis))
    }

    /// The master's connection settings at `host:port` (TLS as configured).
    fn master_info(&self, host: &str, port: u16) -> ConnectionInfo {
        let addr = match self.master.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_string(), port),
        };
        self.master.clone().set_addr(addr)
    }
}

/// Asks the sentinels for the master and connects to it; shared by every connection the process
/// opens, so the sentinel that answered last is asked first and a new master is logged once.
#[derive(Debug)]
pub struct MasterFinder {
    pub config: SentinelConfig,
    first: AtomicUsize,
    last_master: Mutex<Option<String>>,
}

/// Why no master could be used, sentinel by sentinel.
#[derive(Debug, thiserror::Error)]
#[error(
    "no usable master {name:?} from the sentinels: {}{}",
    .tried.join("; "),
    if *.unknown_name { " (check --sentinel-master, or the master name in the URL)" } else { "" }
)]
pub struct NoMaster {
    pub name: String,
    pub tried: Vec<String>,
    /// Every sentinel that answered said it does not know the name (a configuration error).
    pub unknown_name: bool,
}

impl MasterFinder {
    pub fn new(config: SentinelConfig) -> Self {
        MasterFinder {
            config,
            first: AtomicUsize::new(0),
            last_master: Mutex::new(None),
        }
    }

    /// One sentinel's answer to `SENTINEL get-master-addr-by-name`: `None` if it does not know
    /// the name.
    fn ask(&self, host: &str, port: u16) -> redis::RedisResult<Option<(String, u16)>> {
        let client = redis::Client::open(self.config.sentinel_info(host, port)?)?;
        let mut con = client.get_connection_with_timeout(SENTINEL_TIMEOUT)?;
        con.set_read_timeout(Some(SENTINEL_TIMEOUT))?;
        con.set_write_timeout(Some(SENTINEL_TIMEOUT))?;
        let reply: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.config.master_name)
            .query(&mut con)?;
        match reply {
            None => Ok(None),
            Some((h, p)) => match p.parse::<u16>() {
                Ok(p) => Ok(Some((h, p))),
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "sentinel answered a bad port",
                    p,
                ))),
            },
        }
    }

    /// Connect to the master the sentinels name. `open` connects to the given settings with the
    /// caller's timeouts and checks that the server is a master (`ROLE`); a server it refuses is
    /// not tried again through another sentinel in the same round.
    pub fn connect(
        &self,
        open: impl Fn(ConnectionInfo) -> redis::RedisResult<redis::Connection>,
    ) -> Result<redis::Connection, NoMaster> {
        let n = self.config.sentinels.len();
        let start = self.first.load(Ordering::Relaxed) % n.max(1);
        let mut tried = Vec::new();
        let mut failed_masters: Vec<(String, u16)> = Vec::new();
        let mut unknown = 0;
        for i in 0..n {
            let idx = (start + i) % n;
            let (host, port) = &self.config.sentinels[idx];
            let master = match self.ask(host, *port) {
                Ok(Some(m)) => m,
                Ok(None) => {
                    unknown += 1;
                    tried.push(format!(
                        "sentinel {host}:{port} does not know master {:?}",
                        self.config.master_name
                    ));
                    continue;
                }
                Err(e) => {
                    tried.push(format!("sentinel {host}:{port}: {e}"));
                    continue;
                }
            };
            if failed_masters.contains(&master) {
                tried.push(format!(
                    "sentinel {host}:{port} names {}:{} too",
                    master.0, master.1
                ));
                continue;
            }
            let (mh, mp) = (&master.0, master.1);
            match open(self.config.master_info(mh, mp)) {
                Ok(con) => {
                    self.first.store(idx, Ordering::Relaxed);
                    self.note_master(&format!("{mh}:{mp}"));
                    return Ok(con);
                }
                Err(e) => tried.push(format!("sentinel {host}:{port} names {mh}:{mp}: {e}")),
            }
            failed_masters.push(master);
        }
        Err(NoMaster {
            name: self.config.master_name.clone(),
            unknown_name: unknown > 0 && unknown == tried.len(),
            tried,
        })
    }

    /// Log when the master changes (the first one found too).
    fn note_master(&self, addr: &str) {
        let mut last = self.last_master.lock().unwrap_or_else(|e| e.into_inner());
        match last.as_deref() {
            Some(prev) if prev == addr => return,
            Some(prev) => warn!(
                "sentinel: master {:?} is now {addr} (was {prev}): following the failover",
                self.config.master_name
            ),
            None => info!("sentinel: master {:?} is {addr}", self.config.master_name),
        }
        *last = Some(addr.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(url: &'a str, sentinel: Option<&'a str>) -> SentinelArgs<'a> {
        SentinelArgs {
            url,
            sentinel,
            master_name: "mymaster",
            username: None,
            password: None,
            tls: false,
        }
    }

    #[test]
    fn sentinel_lists() {
        assert_eq!(
            parse_sentinel_list("a:1, b , [::1]:3,").unwrap(),
            vec![
                ("a".to_string(), 1),
                ("b".to_string(), 26379),
                ("::1".to_string(), 3)
            ]
        );
        assert!(parse_sentinel_list(" , ").is_err());
        assert!(parse_sentinel_list("a:x").is_err());
    }

    #[test]
    fn flag_form_takes_the_master_settings_from_the_url() {
        let c = SentinelConfig::from_args(&args(
            "rediss://u:p%40ss@ignored:1/3",
            Some("s1:5000,s2:5001"),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(c.sentinels.len(), 2);
        assert_eq!(c.master_name, "mymaster");
        assert_eq!(c.master.redis_settings().password(), Some("p@ss"));
        assert_eq!(c.master.redis_settings().username(), Some("u"));
        assert_eq!(c.master.redis_settings().db(), 3);
        assert!(!c.sentinel_tls);
        let m = c.master_info("10.0.0.9", 6380);
        assert!(
            matches!(m.addr(), ConnectionAddr::TcpTls { host, port: 6380, .. } if host == "10.0.0.9")
        );
        assert_eq!(
            c.display(),
            "rediss+sentinel://***@s1:5000,s2:5001/mymaster/3"
        );
        // No sentinel: plain Redis.
        assert!(
            SentinelConfig::from_args(&args("redis://h:1/0", None))
                .unwrap()
                .is_none()
        );
        assert!(SentinelConfig::from_args(&args("unix:///tmp/r.sock", Some("s:1"))).is_err());
    }

    #[test]
    fn url_form() {
        let c = SentinelConfig::from_args(&args(
            "redis+sentinel://:secret@h1:26379,h2/othermaster/2",
            None,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            c.sentinels,
            vec![("h1".to_string(), 26379), ("h2".to_string(), 26379)]
        );
        assert_eq!(c.master_name, "othermaster");
        assert_eq!(c.master.redis_settings().password(), Some("secret"));
        assert_eq!(c.master.redis_settings().db(), 2);
        assert!(matches!(
            c.master_info("x", 1).addr(),
            ConnectionAddr::Tcp(..)
        ));
        let c = SentinelConfig::from_args(&args("rediss+sentinel://h1:1/m", None))
            .unwrap()
            .unwrap();
        assert!(c.sentinel_tls);
        assert_eq!(c.master.redis_settings().db(), 0);
        for bad in [
            "redis+sentinel://h1:1",
            "redis+sentinel://h1:1/m/x",
            "redis+sentinel://h1:1/m/1/2",
            "redis+sentinel://h1:1/m?db=1",
            "redis+sentinel:///m",
        ] {
            assert!(
                SentinelConfig::from_args(&args(bad, None)).is_err(),
                "{bad} accepted"
            );
        }
        assert!(
            SentinelConfig::from_args(&args("redis+sentinel://h:1/m", Some("s:1"))).is_err(),
            "both forms at once"
        );
    }
}
