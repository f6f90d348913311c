//! The backup file: `PCBK`, a format version, a length-prefixed JSON header
//! (backup id, database, time, KMS key id, the wrapped data key and its
//! encryption context), then the c2sp chunked ciphertext. The exact header bytes
//! are the chunked encryption's context, so any edit to the header fails the
//! commitment; an edited encryption context also fails at KMS `Decrypt`.

use crate::BackupError;
use portcullis_shared::crypto::EncryptionContext;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};

pub const MAGIC: &[u8; 4] = b"PCBK";
pub const VERSION: u8 = 1;
const MAX_HEADER: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub backup_id: String,
    pub database: String,
    pub created_at: i64,
    pub kms_key_id: String,
    /// The data key, wrapped by KMS under `context` (base64).
    pub wrapped_key: String,
    pub context: BTreeMap<String, String>,
}

/// The encryption context of a backup's data key: purpose, database and id.
pub fn context_for(database: &str, backup_id: &str) -> BTreeMap<String, String> {
    [("app", "portcullis"), ("purpose", "backup"), ("database", database), ("backup_id", backup_id)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub fn encryption_context(context: &BTreeMap<String, String>) -> EncryptionContext {
    EncryptionContext::from_pairs(context.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Writes magic, version and header; returns the header bytes (the chunked context).
pub fn write_header(out: &mut impl Write, header: &Header) -> Result<Vec<u8>, BackupError> {
    let bytes = serde_json::to_vec(header).map_err(|e| BackupError::Format(e.to_string()))?;
    out.write_all(MAGIC)?;
    out.write_all(&[VERSION])?;
    out.write_all(&(bytes.len() as u32).to_be_bytes())?;
    out.write_all(&bytes)?;
    Ok(bytes)
}

pub fn read_header(input: &mut impl Read) -> Result<(Header, Vec<u8>), BackupError> {
    let mut fixed = [0u8; 9];
    input.read_exact(&mut fixed).map_err(|_| BackupError::Format("truncated header".into()))?;
    if &fixed[..4] != MAGIC {
        return Err(BackupError::Format("not a Portcullis backup".into()));
    }
    if fixed[4] != VERSION {
        return Err(BackupError::Format(format!("unsupported format version {}", fixed[4])));
    }
    let len = u32::from_be_bytes([fixed[5], fixed[6], fixed[7], fixed[8]]) as usize;
    if len > MAX_HEADER {
        return Err(BackupError::Format("header too large".into()));
    }
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes).map_err(|_| BackupError::Format("truncated header".into()))?;
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| BackupError::Format(format!("header: {e}")))?;
    Ok((header, bytes))
}
