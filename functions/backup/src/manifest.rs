//! A backup's manifest (what it holds, authenticated with a key derived from
//! its data key), where manifests are stored, and the times a backup's id and
//! object key carry.

use crate::BackupError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a completed backup holds; written only after the object is stored
/// whole and read back. `mac` authenticates every other field under a key
/// derived from the backup's data key, so only a holder of that key (KMS
/// `Decrypt` under the backup's encryption context) can check it, and nobody
/// without the key can edit or forge a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u8,
    pub backup_id: String,
    pub database: String,
    pub created_at: i64,
    pub object_key: String,
    pub ciphertext_bytes: u64,
    pub ciphertext_sha256: String,
    pub tables: BTreeMap<String, u64>,
    /// HMAC-SHA256 (hex) of the manifest with this field empty.
    pub mac: String,
}

/// The manifest's MAC key: HKDF-SHA256 from the data key, for this use only
/// (the chunked encryption derives its keys with other labels).
fn manifest_key_from(data_key: &[u8; 32]) -> Result<aws_lc_rs::hmac::Key, BackupError> {
    let prk = aws_lc_rs::hkdf::Prk::new_less_safe(aws_lc_rs::hkdf::HKDF_SHA256, data_key);
    let okm = prk
        .expand(&[b"portcullis backup manifest v1"], aws_lc_rs::hmac::HMAC_SHA256)
        .map_err(|_| BackupError::Format("manifest key".into()))?;
    Ok(aws_lc_rs::hmac::Key::from(okm))
}

fn manifest_body(manifest: &Manifest) -> Result<Vec<u8>, BackupError> {
    serde_json::to_vec(&Manifest { mac: String::new(), ..manifest.clone() })
        .map_err(|e| BackupError::Format(e.to_string()))
}

impl Manifest {
    pub(crate) fn seal(&mut self, data_key: &[u8; 32]) -> Result<(), BackupError> {
        let tag = aws_lc_rs::hmac::sign(&manifest_key_from(data_key)?, &manifest_body(self)?);
        self.mac = hex::encode(tag.as_ref());
        Ok(())
    }

    pub(crate) fn authenticate(&self, data_key: &[u8; 32]) -> Result<(), BackupError> {
        let tag = hex::decode(&self.mac)
            .map_err(|_| BackupError::Mismatch("the manifest is not authenticated".into()))?;
        aws_lc_rs::hmac::verify(&manifest_key_from(data_key)?, &manifest_body(self)?, &tag)
            .map_err(|_| BackupError::Mismatch("the manifest was edited or belongs to another backup".into()))
    }
}

/// How far apart a backup id's time and its manifest's storage time may be: a
/// run's 15 minutes, with room for clocks that disagree. (An upload begun during
/// a run cannot be completed much later: the bucket aborts incomplete multipart
/// uploads after a day, and a manifest is a single PutObject.)
pub(crate) const MAX_RUN_SKEW_SECS: i64 = 3600;

/// The time a UUIDv7 backup id was made (epoch seconds).
pub(crate) fn minted_at(backup_id: &str) -> Result<i64, BackupError> {
    uuid::Uuid::parse_str(backup_id)
        .ok()
        .filter(|u| u.get_version_num() == 7)
        .and_then(|u| u.get_timestamp())
        .map(|t| t.to_unix().0 as i64)
        .ok_or_else(|| BackupError::Format(format!("{backup_id} is not a backup id")))
}

pub(crate) fn manifest_key(backup_id: &str) -> String {
    format!("manifests/{backup_id}.json")
}

/// `YYYY-MM-DDTHH-MM-SSZ` for an epoch second (UTC), for object keys.
pub(crate) fn utc_stamp(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}
