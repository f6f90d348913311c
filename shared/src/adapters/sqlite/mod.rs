//! The embedded store of the local server: every port (users, MFA, audit, key
//! material, sessions, API keys, MFA challenges, attempt counters) in one SQLite
//! file, `.portcullis/portcullis.db` unless configured otherwise.
//!
//! Write safety: WAL with `synchronous=FULL`, so a commit is on disk before the
//! call returns and a killed process loses nothing it acknowledged. Every
//! check-then-write runs in a `BEGIN IMMEDIATE` transaction (the write lock is
//! taken before the read), so two processes on one file cannot interleave. The
//! file and its folder are owner-only: they hold password hashes and encrypted
//! fields. rusqlite is synchronous: each operation runs on a blocking thread,
//! holding the one connection for its duration.

mod apikeys;
mod ephemeral;
mod pending;
mod records;
mod schema;
mod sessions;
mod users;

use crate::store::StoreError;
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One SQLite file serving every port. Clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it owner-only, with its folder) the database at `path`,
    /// applies the pragmas, creates or migrates the schema and forgets rows
    /// whose expiry passed before `now`.
    pub async fn open(path: &Path, now: i64) -> Result<Self, StoreError> {
        let owned = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&owned, now))
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))??;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: path.to_owned() })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `op` on the connection on a blocking thread.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let mut conn = self.conn.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || {
            // A caller dropped mid-transaction (a cancelled request) must not
            // leave its transaction open for the next one.
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK").map_err(classify)?;
            }
            op(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    }

    /// Runs `op` in a `BEGIN IMMEDIATE` transaction, committed when it returns
    /// `Ok` and rolled back when it returns `Err`.
    async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(classify)?;
            let out = op(&tx)?;
            tx.commit().map_err(classify)?;
            Ok(out)
        })
        .await
    }
}

fn open_blocking(path: &Path, now: i64) -> Result<Connection, StoreError> {
    prepare_file(path)?;
    let mut conn = Connection::open(path).map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    // `journal_mode` answers the mode in force: anything but WAL (a file system
    // without shared memory) would silently weaken the guarantees above.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt("the SQLite file cannot use write-ahead logging"));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(classify)?;
    schema::migrate(&mut conn)?;
    schema::forget_expired(&conn, now)?;
    Ok(conn)
}

/// Creates the folder (0700) and the file (0600) when missing, and refuses a
/// file other users can read (as the local master key file does).
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| StoreError::Unavailable(Box::new(e));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io)?;
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::Unavailable(
            format!("{} is readable by other users; chmod 600 it", path.display()).into(),
        ));
    }
    Ok(())
}

/// A unique or primary-key violation is `Duplicate`; anything else an outage.
fn classify(err: rusqlite::Error) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == ErrorCode::ConstraintViolation
                && matches!(
                    e.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
        {
            StoreError::Duplicate
        }
        _ => StoreError::Unavailable(Box::new(err)),
    }
}

/// A list of names (roles, `amr`, permissions) as stored: a JSON array.
fn names_to_text(names: &[String]) -> String {
    serde_json::Value::from(names.to_vec()).to_string()
}

fn names_from_text(text: &str, what: &'static str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(what))
}

/// A fixed-size key read back from a BLOB column.
fn fixed<const N: usize>(bytes: Vec<u8>, what: &'static str) -> Result<[u8; N], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(what))
}

#[cfg(test)]
mod tests;
