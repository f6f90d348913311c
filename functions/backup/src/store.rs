//! Where backups go: a local directory, or S3 with multipart upload and SSE-KMS
//! on top of the client-side encryption. Objects are written whole before the
//! manifest, so an interrupted run never leaves a backup that looks complete.
//! Every write creates: a key that exists is never replaced (S3 `If-None-Match:
//! *`, which the bucket policy demands of every writer), so whoever can write to
//! the store — the backup function's own role included — cannot put new content
//! under the id of a backup that is already there.

use crate::BackupError;
use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// Part size for multipart uploads (S3's minimum is 5 MiB, except the last).
const PART: usize = 8 * 1024 * 1024;

#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Stores the file at `path` under `key`, which must not exist yet.
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), BackupError>;
    /// Stores `bytes` under `key`, which must not exist yet.
    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), BackupError>;
    /// Downloads `key` into the file at `dest`.
    async fn get_file(&self, key: &str, dest: &Path) -> Result<(), BackupError>;
    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, BackupError>;
    /// When the store wrote `key` (epoch seconds, the store's own clock).
    async fn stored_at(&self, key: &str) -> Result<i64, BackupError>;
}

/// A directory on the local machine (the embedded mode and operators' copies).
pub struct LocalStore {
    pub dir: PathBuf,
}

impl LocalStore {
    fn path(&self, key: &str) -> Result<PathBuf, BackupError> {
        if key.split('/').any(|part| part.is_empty() || part == ".." || part == ".") {
            return Err(BackupError::Format(format!("invalid object key {key}")));
        }
        Ok(self.dir.join(key))
    }
}

#[async_trait]
impl BackupStore for LocalStore {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), BackupError> {
        let dest = self.path(key)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // Copy, then link into place: a reader never sees a half-written object,
        // and the link fails when the key exists.
        let partial = dest.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::copy(path, &partial).await?;
        publish(&partial, &dest, key).await
    }

    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        let dest = self.path(key)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let partial = dest.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&partial, bytes).await?;
        publish(&partial, &dest, key).await
    }

    async fn get_file(&self, key: &str, dest: &Path) -> Result<(), BackupError> {
        tokio::fs::copy(self.path(key)?, dest).await.map_err(|_| BackupError::NotFound(key.to_owned()))?;
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, BackupError> {
        tokio::fs::read(self.path(key)?).await.map_err(|_| BackupError::NotFound(key.to_owned()))
    }

    async fn stored_at(&self, key: &str) -> Result<i64, BackupError> {
        let modified = tokio::fs::metadata(self.path(key)?)
            .await
            .and_then(|m| m.modified())
            .map_err(|_| BackupError::NotFound(key.to_owned()))?;
        let secs = match modified.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => after.as_secs() as i64,
            Err(before) => -(before.duration().as_secs() as i64),
        };
        Ok(secs)
    }
}

/// Moves a finished file to `dest` unless something is there already.
async fn publish(partial: &Path, dest: &Path, key: &str) -> Result<(), BackupError> {
    let linked = tokio::fs::hard_link(partial, dest).await;
    let _ = tokio::fs::remove_file(partial).await;
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(BackupError::Exists(key.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// An S3 bucket; every object is also encrypted at rest with `kms_key_id`.
pub struct S3Store {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub kms_key_id: Option<String>,
}

fn s3_error(err: impl std::error::Error + Send + Sync + 'static) -> BackupError {
    BackupError::Storage(Box::new(err))
}

/// A create refused because the key exists (412 Precondition Failed) is
/// [`BackupError::Exists`]; anything else a storage error.
fn refused_or<E>(err: SdkError<E, HttpResponse>, key: &str) -> BackupError
where
    E: std::error::Error + Send + Sync + 'static,
{
    if err.raw_response().map(|r| r.status().as_u16()) == Some(412) {
        return BackupError::Exists(key.to_owned());
    }
    BackupError::Storage(Box::new(err))
}

impl S3Store {
    /// Uploads `path` in parts of [`PART`] bytes and completes the upload,
    /// refused when the key exists already.
    async fn upload_parts(&self, key: &str, upload_id: &str, path: &Path) -> Result<(), BackupError> {
        let mut file = tokio::fs::File::open(path).await?;
        let mut parts = Vec::new();
        let mut number = 1;
        loop {
            let mut buf = Vec::with_capacity(PART);
            (&mut file).take(PART as u64).read_to_end(&mut buf).await?;
            if buf.is_empty() && number > 1 {
                break;
            }
            let last = buf.len() < PART;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(buf))
                .send()
                .await
                .map_err(s3_error)?;
            let etag = part.e_tag().map(str::to_owned);
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(etag).build());
            number += 1;
            if last {
                break;
            }
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .if_none_match("*")
            .send()
            .await
            .map_err(|e| refused_or(e, key))?;
        Ok(())
    }
}

#[async_trait]
impl BackupStore for S3Store {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), BackupError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(self.kms_key_id.clone())
            .send()
            .await
            .map_err(s3_error)?;
        let upload_id =
            created.upload_id().ok_or_else(|| BackupError::Format("no upload id".into()))?.to_owned();
        let result = self.upload_parts(key, &upload_id, path).await;
        if result.is_err() {
            // Nothing half-uploaded stays behind.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(self.kms_key_id.clone())
            .body(ByteStream::from(bytes))
            .if_none_match("*")
            .send()
            .await
            .map_err(|e| refused_or(e, key))?;
        Ok(())
    }

    async fn get_file(&self, key: &str, dest: &Path) -> Result<(), BackupError> {
        let object = self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(s3_error)?;
        let mut body = object.body.into_async_read();
        let mut file = tokio::fs::File::create(dest).await?;
        tokio::io::copy(&mut body, &mut file).await?;
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, BackupError> {
        let object = self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(s3_error)?;
        Ok(object.body.collect().await.map_err(s3_error)?.into_bytes().to_vec())
    }

    async fn stored_at(&self, key: &str) -> Result<i64, BackupError> {
        let head = self.client.head_object().bucket(&self.bucket).key(key).send().await.map_err(s3_error)?;
        head.last_modified()
            .map(|t| t.secs())
            .ok_or_else(|| BackupError::Format(format!("{key} has no time")))
    }
}
