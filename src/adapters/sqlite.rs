//! SQLite access for the maintenance job when `DATABASE_URL=sqlite:///path` (the platform's local
//! development setup). Only what `cleanup_stale_reservations` needs: open the file SQLAlchemy names.

use std::path::PathBuf;
use std::time::Duration;

/// Why the SQLite database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error(
        "invalid sqlite DATABASE_URL '{0}': expected sqlite:///relative/path or sqlite:////absolute/path"
    )]
    BadUrl(String),
    #[error("sqlite {path}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// The file a SQLAlchemy-style `sqlite:///` URL points at (`None` when the URL is not SQLite).
/// `sqlite:///x.db` is relative, `sqlite:////abs/x.db` absolute, `sqlite://` in-memory.
pub fn path_from_url(url: &str) -> Option<Result<PathBuf, SqliteError>> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    if scheme.split('+').next() != Some("sqlite") {
        return None;
    }
    let rest = rest.split('?').next().unwrap_or(rest);
    Some(match rest.strip_prefix('/') {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(SqliteError::BadUrl(url.to_string())),
    })
}

/// Open the database file (it must exist: the platform created its tables).
pub fn open(path: &std::path::Path) -> Result<rusqlite::Connection, SqliteError> {
    let err = |source| SqliteError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            path_from_url("sqlite:///./dev.db").unwrap().unwrap(),
            PathBuf::from("./dev.db")
        );
        assert_eq!(
            path_from_url("sqlite:////tmp/x.db").unwrap().unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert!(path_from_url("sqlite://").unwrap().is_err());
        assert!(path_from_url("postgresql://h/db").is_none());
    }
}
