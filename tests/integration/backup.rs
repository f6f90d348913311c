//! Encrypted backups on MariaDB and moto (KMS, S3): a seeded database backed up
//! by the read-only backup user, restored into an empty database with identical
//! table checksums; tampering, truncation, reordering and an edited header are
//! refused; no plaintext reaches the stored object.

use crate::helpers::{admin_url, TestDb};
use crate::kms::{kms_client, new_kms_key};
use mysql_async::prelude::Queryable;
use portcullis_backup::{Backup, BackupError, BackupStore, LocalStore, S3Store};
use portcullis_shared::clock::SystemClock;
use portcullis_shared::crypto::KmsKeyProvider;
use std::sync::Arc;

const MARKER: &str = "PLAINTEXT-MARKER-7f3a";

async fn seed(db: &TestDb) {
    let mut owner = db.owner_conn().await;
    owner
        .query_drop(
            "CREATE TABLE kitchen_sink (id INT PRIMARY KEY, big BIGINT NULL, name VARCHAR(100) CHARACTER SET utf8mb4 NULL, \
             body LONGTEXT NULL, blob_col VARBINARY(64) NULL, at DATETIME(6) NULL, price DECIMAL(12,4) NULL)",
        )
        .await
        .expect("create");
    let large = format!("{MARKER} {}", "lorem ipsum dolor ".repeat(20_000));
    for i in 0..300_i64 {
        let name: Option<String> = (i % 7 != 0).then(|| format!("naïve café 😀 {MARKER} #{i}"));
        let blob: Option<Vec<u8>> =
            (i % 5 != 0).then(|| (0..64).map(|b| ((b * 37 + i) % 256) as u8).collect());
        // Random text (hardly compressible) spreads the backup over many chunks.
        let body = if i % 50 == 0 {
            Some(large.clone())
        } else if i % 10 == 0 {
            Some((0..600).map(|_| uuid::Uuid::new_v4().to_string()).collect::<String>())
        } else {
            None
        };
        owner
            .exec_drop(
                "INSERT INTO kitchen_sink VALUES (?, ?, ?, ?, ?, FROM_UNIXTIME(?), ?)",
                (
                    i,
                    (i % 3 != 0).then_some(i * 1_000_000_007),
                    name,
                    body,
                    blob,
                    1_700_000_000 + i,
                    format!("{i}.0042"),
                ),
            )
            .await
            .expect("insert");
    }
    owner
        .exec_drop(
            "INSERT INTO audit_log (occurred_at, event_type, outcome, subject) VALUES (NOW(6), 'seed', 'success', ?)",
            (MARKER,),
        )
        .await
        .expect("audit row");
}

async fn empty_database() -> (String, mysql_async::Conn) {
    let name = format!("pct_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&admin_url()).expect("url")).await.expect("admin");
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    // sql-splice-reviewed: a database name cannot be a parameter; checked to [a-z0-9_] above.
    let create = format!("CREATE DATABASE {name}");
    admin.query_drop(create).await.expect("create database");
    let conn =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&format!("{}/{name}", admin_url())).expect("url"))
            .await
            .expect("connect");
    (name, conn)
}

async fn checksums(conn: &mut mysql_async::Conn, tables: &[String]) -> Vec<(String, Option<u64>)> {
    let mut out = Vec::new();
    for table in tables {
        assert!(table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        // sql-splice-reviewed: table names from the manifest, checked to [A-Za-z0-9_] above.
        let sql = format!("CHECKSUM TABLE `{table}`");
        let row: Option<(String, Option<u64>)> = conn.query_first(sql).await.expect("checksum");
        out.push((table.clone(), row.and_then(|r| r.1)));
    }
    out
}

async fn backup_with(store: Arc<dyn BackupStore>, database: &str) -> Backup {
    Backup {
        database: database.to_owned(),
        store,
        keys: Arc::new(KmsKeyProvider::new(kms_client().await, new_kms_key().await)),
        clock: Arc::new(SystemClock),
        scratch: std::env::temp_dir().join(format!("pc-backup-{}", crate::helpers::hex_token())),
        progress: None,
    }
}

#[tokio::test]
async fn a_backup_restores_into_an_empty_database_with_identical_checksums() {
    let db = TestDb::create().await;
    seed(&db).await;
    let bucket = format!("pct-backups-{}", crate::helpers::hex_token());
    let s3 = aws_sdk_s3::Client::new(portcullis_shared::runtime::aws_config().await);
    s3.create_bucket().bucket(&bucket).send().await.expect("moto CreateBucket");
    let store = Arc::new(S3Store { client: s3.clone(), bucket: bucket.clone(), kms_key_id: None });
    let backup = backup_with(store.clone(), &db.name).await;

    let manifest =
        backup.run(&mut db.user_conn("backup").await).await.expect("backup runs as the read-only user");
    assert_eq!(manifest.tables["kitchen_sink"], 300);
    assert!(manifest.tables.contains_key("users") && manifest.tables.contains_key("audit_log"));
    assert!(manifest.object_key.starts_with(&format!("{}/", db.name)));

    let object = store.get_bytes(&manifest.object_key).await.expect("object");
    assert_eq!(object.len() as u64, manifest.ciphertext_bytes);
    assert!(!object.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()), "plaintext in the stored object");
    assert!(!object.windows(5).any(|w| w == b"lorem"), "plaintext in the stored object");

    let verified = backup.check(&manifest.backup_id, None).await.expect("verify");
    assert_eq!(verified, manifest);
    let (_, mut target) = empty_database().await;
    backup.check(&manifest.backup_id, Some(&mut target)).await.expect("restore");
    let tables: Vec<String> = manifest.tables.keys().cloned().collect();
    let mut source = db.owner_conn().await;
    assert_eq!(checksums(&mut target, &tables).await, checksums(&mut source, &tables).await);
}

/// Rewrites the stored object with `mutate`, and the manifest to match it, as an
/// attacker with write access to the bucket could.
async fn tamper(
    dir: &std::path::Path,
    manifest: &portcullis_backup::Manifest,
    mutate: impl Fn(&mut Vec<u8>),
) {
    let path = dir.join(&manifest.object_key);
    let mut bytes = std::fs::read(&path).expect("object");
    mutate(&mut bytes);
    std::fs::write(&path, &bytes).expect("write");
    let mut forged = manifest.clone();
    forged.ciphertext_bytes = bytes.len() as u64;
    forged.ciphertext_sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes));
    std::fs::write(
        dir.join(format!("manifests/{}.json", manifest.backup_id)),
        serde_json::to_vec(&forged).expect("json"),
    )
    .expect("write manifest");
}

#[tokio::test]
async fn tampered_truncated_reordered_or_relabelled_backups_are_refused() {
    let db = TestDb::create().await;
    seed(&db).await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let backup = backup_with(Arc::new(LocalStore { dir: dir.clone() }), &db.name).await;
    let manifest = backup.run(&mut db.user_conn("backup").await).await.expect("backup");
    let original = std::fs::read(dir.join(&manifest.object_key)).expect("object");
    let header_len = 9 + u32::from_be_bytes([original[5], original[6], original[7], original[8]]) as usize;
    let body = header_len + 56; // after the chunked header (salt + commitment)
    let chunk = 16 * 1024 + 16;
    assert!(original.len() > body + 3 * chunk, "the seeded backup spans several chunks");

    // A flipped byte with the manifest untouched: the digest check refuses it.
    let mut flipped = original.clone();
    flipped[body + 10] ^= 1;
    std::fs::write(dir.join(&manifest.object_key), &flipped).expect("write");
    assert!(matches!(backup.check(&manifest.backup_id, None).await, Err(BackupError::Mismatch(_))));

    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("flipped byte", Box::new(move |b: &mut Vec<u8>| b[body + chunk + 10] ^= 1)),
        ("truncated", Box::new(move |b: &mut Vec<u8>| b.truncate(body + 2 * chunk))),
        (
            "reordered chunks",
            Box::new(move |b: &mut Vec<u8>| {
                let first: Vec<u8> = b[body..body + chunk].to_vec();
                let second: Vec<u8> = b[body + chunk..body + 2 * chunk].to_vec();
                b[body..body + chunk].copy_from_slice(&second);
                b[body + chunk..body + 2 * chunk].copy_from_slice(&first);
            }),
        ),
        (
            "header relabelled to another database",
            Box::new(move |b: &mut Vec<u8>| {
                let header = String::from_utf8(b[9..header_len].to_vec()).expect("utf8");
                // Only the encryption context's copy (the last one): KMS must refuse the data key.
                let at = header.rfind("\"database\":\"pct_").expect("context database");
                let mut edited = header.clone();
                edited.replace_range(at..at + 16, "\"database\":\"xct_");
                assert_ne!(header, edited);
                b.splice(9..header_len, edited.into_bytes());
            }),
        ),
    ];
    for (name, mutation) in cases {
        std::fs::write(dir.join(&manifest.object_key), &original).expect("reset");
        tamper(&dir, &manifest, mutation).await;
        let (_, mut target) = empty_database().await;
        assert!(backup.check(&manifest.backup_id, None).await.is_err(), "verify accepted: {name}");
        assert!(
            backup.check(&manifest.backup_id, Some(&mut target)).await.is_err(),
            "restore accepted: {name}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_kms_fails_the_run_and_leaves_no_backup() {
    let db = TestDb::create().await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let conf = aws_sdk_kms::config::Builder::from(portcullis_shared::runtime::aws_config().await)
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let backup = Backup {
        database: db.name.clone(),
        store: Arc::new(LocalStore { dir: dir.clone() }),
        keys: Arc::new(KmsKeyProvider::new(aws_sdk_kms::Client::from_conf(conf), "unreachable".into())),
        clock: Arc::new(SystemClock),
        scratch: dir.join("scratch"),
        progress: None,
    };
    let started = std::time::Instant::now();
    let result = backup.run(&mut db.user_conn("backup").await).await;
    assert!(matches!(result, Err(BackupError::Key(_))), "{result:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "retries are not bounded");
    let leftovers: Vec<_> = walk(&dir);
    assert!(leftovers.iter().all(|p| !p.ends_with(".json") && !p.ends_with(".pcbk")), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

/// A table `bulk` of `2^doublings` rows of 1 KiB of random bytes: bulk for
/// the fault tests below.
async fn fill_bulk(db: &TestDb, doublings: u32) {
    let mut owner = db.owner_conn().await;
    owner
        .query_drop(
            "CREATE TABLE bulk (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload VARBINARY(1024) NOT NULL)",
        )
        .await
        .expect("create");
    owner.query_drop("INSERT INTO bulk (payload) VALUES (RANDOM_BYTES(1024))").await.expect("seed");
    for _ in 0..doublings {
        owner
            .query_drop("INSERT INTO bulk (payload) SELECT RANDOM_BYTES(1024) FROM bulk")
            .await
            .expect("double");
    }
}

/// The database connection dropping in the middle of the dump (killed from
/// another session, as a failover or a network cut would) fails the run and
/// leaves no object, no manifest and no scratch file.
#[tokio::test]
async fn a_connection_lost_mid_dump_fails_the_run_and_leaves_no_backup() {
    let db = TestDb::create().await;
    // 2^15 rows of 1 KiB: a dump long enough to be caught in the act.
    fill_bulk(&db, 15).await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let mut backup = backup_with(Arc::new(LocalStore { dir: dir.clone() }), &db.name).await;
    backup.scratch = dir.join("scratch");
    let mut conn = db.user_conn("backup").await;
    let victim = conn.id();
    let mut admin =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&crate::helpers::admin_url()).expect("admin url"))
            .await
            .expect("admin connection");
    let killer = tokio::spawn(async move {
        // Wait until the dump is reading `bulk`, then cut its connection.
        let reading = "SELECT * FROM `bulk`";
        for _ in 0..10_000 {
            let info: Option<Option<String>> = admin
                .exec_first("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = ?", (victim,))
                .await
                .expect("process list");
            if info.flatten().as_deref() == Some(reading) {
                admin.exec_drop("KILL CONNECTION ?", (victim,)).await.expect("kill");
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        false
    });
    let result = backup.run(&mut conn).await;
    assert!(killer.await.expect("killer task"), "the dump of `bulk` was never seen running");
    assert!(matches!(result, Err(BackupError::Database(_))), "{result:?}");
    let leftovers = walk(&dir);
    assert!(leftovers.is_empty(), "a failed run left files behind: {leftovers:?}");
}

/// Fails the upload of the second part, as a network cut in the middle of an
/// upload would; every other request reaches moto untouched.
#[derive(Debug)]
struct CutSecondPart;

impl aws_sdk_s3::config::Intercept for CutSecondPart {
    fn name(&self) -> &'static str {
        "CutSecondPart"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        if context.request().uri().contains("partNumber=2") {
            return Err("connection reset while sending part 2".into());
        }
        Ok(())
    }
}

/// S3 failing in the middle of the multipart upload fails the run: the upload
/// is aborted, and neither an object nor a manifest is left in the bucket.
#[tokio::test]
async fn s3_failing_mid_upload_fails_the_run_and_leaves_nothing_in_the_bucket() {
    let db = TestDb::create().await;
    // 2^14 rows of 1 KiB of random bytes: an object of more than one 8 MiB part.
    fill_bulk(&db, 14).await;
    let sdk = portcullis_shared::runtime::aws_config().await;
    let s3 = aws_sdk_s3::Client::new(sdk);
    let bucket = format!("pct-backups-{}", crate::helpers::hex_token());
    s3.create_bucket().bucket(&bucket).send().await.expect("moto CreateBucket");
    let cut = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk).interceptor(CutSecondPart).build(),
    );
    let store = Arc::new(S3Store { client: cut, bucket: bucket.clone(), kms_key_id: None });
    let backup = backup_with(store, &db.name).await;

    let result = backup.run(&mut db.user_conn("backup").await).await;
    assert!(matches!(result, Err(BackupError::Storage(_))), "{result:?}");
    let uploads = s3.list_multipart_uploads().bucket(&bucket).send().await.expect("ListMultipartUploads");
    assert!(uploads.uploads().is_empty(), "the multipart upload was not aborted: {uploads:?}");
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("ListObjectsV2");
    assert_eq!(listed.key_count(), Some(0), "no object and no manifest: {listed:?}");
}
