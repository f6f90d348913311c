//! The `backup` function: a consistent MySQL snapshot, streamed through zstd and
//! c2sp chunked encryption (AES-256-GCM) under a fresh KMS data key bound to the
//! database and backup id, stored whole (S3 multipart with SSE-KMS, or a local
//! directory), then a manifest with sizes, row counts and the ciphertext's
//! SHA-256. `verify` checks a backup end to end without writing; `restore`
//! loads it into an empty database. Memory stays flat: everything streams
//! through a temporary file.

pub mod chunked;
mod dump;
mod envelope;
mod manifest;
mod restore;
mod store;

pub use manifest::Manifest;
pub use store::{BackupStore, LocalStore, S3Store};

use manifest::{manifest_key, minted_at, utc_stamp, MAX_RUN_SKEW_SECS};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use portcullis_shared::clock::Clock;
use portcullis_shared::crypto::{KeyError, KeyProvider};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Why a backup, verification or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("database: {0}")]
    Database(#[from] mysql_async::Error),
    #[error("key service: {0}")]
    Key(#[from] KeyError),
    #[error("storage")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("backup is malformed: {0}")]
    Format(String),
    #[error("no such backup object {0}")]
    NotFound(String),
    #[error("{0} exists already: a stored backup is never replaced")]
    Exists(String),
    #[error("the backup does not match its manifest: {0}")]
    Mismatch(String),
    #[error("the restore target cannot take this backup: {0}")]
    Target(String),
}

/// The header must name exactly this backup and database, with the encryption
/// context the data key is bound to.
fn check_header(header: &envelope::Header, backup_id: &str, database: &str) -> Result<(), BackupError> {
    if header.backup_id != backup_id
        || header.database != database
        || header.context != envelope::context_for(database, backup_id)
    {
        return Err(BackupError::Mismatch(format!(
            "the object is backup {} of database {}, not backup {backup_id} of {database}",
            header.backup_id, header.database
        )));
    }
    Ok(())
}

/// What a backup run needs.
pub struct Backup {
    pub database: String,
    pub store: Arc<dyn BackupStore>,
    pub keys: Arc<dyn KeyProvider>,
    pub clock: Arc<dyn Clock>,
    pub scratch: PathBuf,
    /// Told the ciphertext bytes processed so far (a terminal progress bar).
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

/// A reader that reports how far it got.
struct Counting<R: Read> {
    inner: R,
    seen: u64,
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if let Some(report) = &self.progress {
            report(self.seen);
        }
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through.
struct Hashing<W: Write> {
    inner: W,
    digest: aws_lc_rs::digest::Context,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.digest.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Backup {
    /// Takes one backup from `conn` (a read-only user) and stores it. The run
    /// reads back what the store holds and checks it end to end with the data
    /// key it already has; only then does the manifest make the backup count.
    pub async fn run(&self, conn: &mut mysql_async::Conn) -> Result<Manifest, BackupError> {
        let backup_id = uuid::Uuid::now_v7().to_string();
        let created_at = self.clock.now_secs();
        let context = envelope::context_for(&self.database, &backup_id);
        let data_key = self.keys.generate_data_key(&envelope::encryption_context(&context)).await?;
        let key = secrecy::ExposeSecret::expose_secret(&data_key.plaintext);
        let header = envelope::Header {
            backup_id: backup_id.clone(),
            database: self.database.clone(),
            created_at,
            kms_key_id: self.keys.key_id(),
            wrapped_key: STANDARD.encode(&data_key.wrapped),
            context,
        };
        std::fs::create_dir_all(&self.scratch)?;
        let path = self.scratch.join(format!("{backup_id}.pcbk"));
        let readback = self.scratch.join(format!("{backup_id}.readback"));
        let result = async {
            let (tables, ciphertext_bytes, digest) = self.write_object(conn, &path, &header, key).await?;
            let manifest = Manifest {
                format_version: envelope::VERSION,
                backup_id: backup_id.clone(),
                database: self.database.clone(),
                created_at,
                object_key: format!("{}/{}-{backup_id}.pcbk", self.database, utc_stamp(created_at)),
                ciphertext_bytes,
                ciphertext_sha256: hex::encode(digest),
                tables,
                mac: String::new(),
            };
            self.publish(manifest, key, &path, &readback).await
        }
        .await;
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&readback);
        match &result {
            Ok(m) => {
                tracing::info!(target: "audit", event_type = "backup_success", backup_id = %m.backup_id, bytes = m.ciphertext_bytes, "backup stored and read back")
            }
            Err(e) => {
                tracing::error!(target: "audit", event_type = "backup_failure", backup_id = %backup_id, error = %e, "backup failed; no manifest written")
            }
        }
        result
    }

    /// Dumps `conn` into the object at `path`: the header, then the compressed
    /// dump in authenticated chunks. The tables, the object's size and SHA-256.
    async fn write_object(
        &self,
        conn: &mut mysql_async::Conn,
        path: &std::path::Path,
        header: &envelope::Header,
        key: &[u8; 32],
    ) -> Result<(BTreeMap<String, u64>, u64, aws_lc_rs::digest::Digest), BackupError> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut hashing = Hashing { inner: file, digest, bytes: 0 };
        let header_bytes = envelope::write_header(&mut hashing, header)?;
        let encryptor = chunked::Encryptor::new(key, &header_bytes, &mut hashing)?;
        let mut compressor = zstd::Encoder::new(encryptor, 3)?;
        let tables = dump::dump(conn, &mut compressor).await?;
        compressor.finish()?.finish()?;
        hashing.flush()?;
        Ok((tables, hashing.bytes, hashing.digest.finish()))
    }

    /// Stores the object, reads it back and checks it whole, then seals and
    /// stores the manifest: only a complete object that reads back ever gets one.
    async fn publish(
        &self,
        mut manifest: Manifest,
        key: &[u8; 32],
        path: &std::path::Path,
        readback: &std::path::Path,
    ) -> Result<Manifest, BackupError> {
        self.store.put_file(&manifest.object_key, path).await?;
        self.store.get_file(&manifest.object_key, readback).await?;
        self.read_object(readback, &manifest, key, None).await?;
        manifest.seal(key)?;
        let manifest_json =
            serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Format(e.to_string()))?;
        let backup_id = &manifest.backup_id;
        self.store.put_bytes(&manifest_key(backup_id), manifest_json).await?;
        // Verify and restore refuse a manifest stored far from its id's time; a run
        // that took that long (or a clock that far off) fails here, not at restore.
        let skew = self.store.stored_at(&manifest_key(backup_id)).await? - minted_at(backup_id)?;
        if skew.abs() > MAX_RUN_SKEW_SECS {
            return Err(BackupError::Mismatch(format!(
                "the manifest was stored {skew}s from the time the id was made: this backup will not verify"
            )));
        }
        Ok(manifest)
    }

    /// The stored manifest of a backup, as stored: not yet authenticated.
    pub async fn manifest(&self, backup_id: &str) -> Result<Manifest, BackupError> {
        let bytes = self.store.get_bytes(&manifest_key(backup_id)).await?;
        serde_json::from_slice(&bytes).map_err(|e| BackupError::Format(format!("manifest: {e}")))
    }

    /// Checks backup `backup_id` of this database end to end; restores it into
    /// `target` when given. Before anything is written: the manifest and the
    /// object must both name this backup and this database, the data key must
    /// unwrap under exactly that encryption context, and the manifest must
    /// authenticate under it. The target must then be empty with the backup's
    /// schema; rows are committed only once the whole backup has been read.
    pub async fn check(
        &self,
        backup_id: &str,
        target: Option<&mut mysql_async::Conn>,
    ) -> Result<Manifest, BackupError> {
        let (id, manifest) = self.stored_manifest(backup_id).await?;
        std::fs::create_dir_all(&self.scratch)?;
        let path = self.scratch.join(format!("{id}.download"));
        let result = async {
            self.store.get_file(&manifest.object_key, &path).await?;
            let (header, _) = envelope::read_header(&mut BufReader::new(std::fs::File::open(&path)?))?;
            check_header(&header, &id, &self.database)?;
            let wrapped = STANDARD
                .decode(&header.wrapped_key)
                .map_err(|_| BackupError::Format("wrapped key".into()))?;
            let context = envelope::encryption_context(&envelope::context_for(&self.database, &id));
            let key = self.keys.decrypt_data_key(&wrapped, &context).await?;
            let key = secrecy::ExposeSecret::expose_secret(&key);
            manifest.authenticate(key)?;
            // The whole backup is read and checked before the target is touched.
            let ddl = self.read_object(&path, &manifest, key, None).await?;
            let Some(conn) = target else {
                return Ok(());
            };
            let mut target = restore::Target::prepare(conn, &ddl).await?;
            match self.read_object(&path, &manifest, key, Some(&mut target)).await {
                Ok(_) => target.commit().await,
                Err(err) => {
                    target.abandon().await;
                    Err(err)
                }
            }
        }
        .await;
        let _ = std::fs::remove_file(&path);
        if let Err(e) = &result {
            tracing::warn!(target: "audit", event_type = "backup_check_failure", backup_id = %id, error = %e, "backup refused");
        }
        result.map(|()| manifest)
    }

    /// The manifest stored for `backup_id`, if it names this backup and this
    /// database, was stored by the run that made the id, and is of this format.
    async fn stored_manifest(&self, backup_id: &str) -> Result<(String, Manifest), BackupError> {
        let id = uuid::Uuid::try_parse(backup_id)
            .map_err(|_| BackupError::Format(format!("{backup_id:?} is not a backup id")))?
            .hyphenated()
            .to_string();
        let manifest = self.manifest(&id).await?;
        if manifest.backup_id != id || manifest.database != self.database {
            return Err(BackupError::Mismatch(format!(
                "the manifest stored for {id} describes backup {} of database {}, not of {}",
                manifest.backup_id, manifest.database, self.database
            )));
        }
        // A backup is written within one run of at most 15 minutes, right after its
        // UUIDv7 id is made; a manifest the store wrote at another time was put
        // there later under an old id (after the original expired, say).
        let minted = minted_at(&id)?;
        let stored = self.store.stored_at(&manifest_key(&id)).await?;
        if (stored - minted).abs() > MAX_RUN_SKEW_SECS {
            return Err(BackupError::Mismatch(format!(
                "the manifest of {id} was stored {}s from the time its id was made: not by the run that made it",
                stored - minted
            )));
        }
        if manifest.format_version != envelope::VERSION {
            return Err(BackupError::Format(format!(
                "unsupported format version {}",
                manifest.format_version
            )));
        }
        Ok((id, manifest))
    }

    /// Reads the object at `path` against `manifest` (size and SHA-256, then a
    /// header naming the manifest's backup and database, then every chunk and
    /// row count) with the data key; writes the rows into `target` when given.
    /// The table definitions it holds, by table.
    async fn read_object(
        &self,
        path: &std::path::Path,
        manifest: &Manifest,
        key: &[u8; 32],
        target: Option<&mut restore::Target<'_>>,
    ) -> Result<BTreeMap<String, String>, BackupError> {
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut file = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
            size += n as u64;
        }
        if size != manifest.ciphertext_bytes || hex::encode(digest.finish()) != manifest.ciphertext_sha256 {
            return Err(BackupError::Mismatch("ciphertext size or SHA-256".into()));
        }
        let file = Counting { inner: std::fs::File::open(path)?, seen: 0, progress: self.progress.clone() };
        let mut input = BufReader::new(file);
        let (header, header_bytes) = envelope::read_header(&mut input)?;
        check_header(&header, &manifest.backup_id, &manifest.database)?;
        let decryptor = chunked::Decryptor::new(key, &header_bytes, input)?;
        let plain = BufReader::new(zstd::Decoder::new(decryptor)?);
        let summary = dump::load(plain, target).await?;
        if summary.rows != manifest.tables {
            return Err(BackupError::Mismatch(format!("row counts {:?}", summary.rows)));
        }
        Ok(summary.ddl)
    }
}

/// True for the EventBridge scheduled event that triggers a backup; any other
/// payload (a stray or hand-made invocation) is refused without touching the database.
pub fn is_schedule(event: &serde_json::Value) -> bool {
    event.get("source").and_then(|v| v.as_str()) == Some("aws.events")
        && event.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event")
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_keys_carry_the_utc_time() {
        assert_eq!(super::utc_stamp(0), "1970-01-01T00-00-00Z");
        assert_eq!(super::utc_stamp(1_795_842_000), "2026-11-28T05-00-00Z");
        assert_eq!(super::utc_stamp(951_782_400), "2000-02-29T00-00-00Z");
    }

    #[test]
    fn only_the_schedule_triggers_a_backup() {
        let scheduled: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/backup/scheduled.json")).expect("event");
        assert!(super::is_schedule(&scheduled));
        let not: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/backup/not-scheduled.json")).expect("event");
        assert!(!super::is_schedule(&not));
        assert!(!super::is_schedule(&serde_json::json!({})));
        assert!(!super::is_schedule(
            &serde_json::json!({"source": "aws.events", "detail-type": "Object Created"})
        ));
    }
}
