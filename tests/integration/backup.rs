//! Encrypted backups on MariaDB and moto (KMS, S3): databases of every shape
//! backed up by the read-only backup user, read back by the run itself, and
//! restored into an empty database with identical table checksums; tampering,
//! truncation, reordering, an edited header and a backup passed off as another
//! are refused before anything is written; a target that is not empty is
//! refused, and a failed restore leaves the target as it was; no plaintext
//! reaches the stored object.

use crate::helpers::{admin_url, TestDb};
use crate::kms::{kms_client, new_kms_key};
use mysql_async::prelude::Queryable;
use portcullis_backup::{Backup, BackupError, BackupStore, LocalStore, Manifest, S3Store};
use portcullis_shared::clock::SystemClock;
use portcullis_shared::crypto::{KeyProvider, KmsKeyProvider};
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

/// A new database with no tables at all.
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

/// An empty database with the project's schema and, as an operator would
/// create them, the definitions of `source`'s tables outside it.
async fn empty_database_shaped_like(source: &TestDb) -> mysql_async::Conn {
    let (_, mut conn) = empty_database().await;
    portcullis_shared::adapters::mysql::apply_migrations(&mut conn).await.expect("migrations");
    let mut owner = source.owner_conn().await;
    let ours: Vec<String> = table_names(&mut conn).await;
    for table in table_names(&mut owner).await {
        if ours.contains(&table) {
            continue;
        }
        // sql-splice-reviewed: table names from SHOW TABLES, checked to [A-Za-z0-9_] by table_names().
        let show = format!("SHOW CREATE TABLE `{table}`");
        let (_, ddl): (String, String) = owner.query_first(show).await.expect("ddl").expect("a table");
        conn.query_drop(ddl).await.expect("create the table in the target");
    }
    conn
}

async fn table_names(conn: &mut mysql_async::Conn) -> Vec<String> {
    let names: Vec<String> = conn.query("SHOW TABLES").await.expect("SHOW TABLES");
    assert!(names.iter().all(|t| t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')));
    names
}

/// Rows per table of the database `conn` is connected to.
async fn row_counts(conn: &mut mysql_async::Conn) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for table in table_names(conn).await {
        // sql-splice-reviewed: checked to [A-Za-z0-9_] by table_names().
        let count = format!("SELECT COUNT(*) FROM `{table}`");
        let n: Option<u64> = conn.query_first(count).await.expect("count");
        out.push((table, n.unwrap_or(0)));
    }
    out
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
    backup_keyed(store, database, Arc::new(KmsKeyProvider::new(kms_client().await, new_kms_key().await)))
}

fn backup_keyed(store: Arc<dyn BackupStore>, database: &str, keys: Arc<dyn KeyProvider>) -> Backup {
    Backup {
        database: database.to_owned(),
        store,
        keys,
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
    let s3 = aws_sdk_s3::Client::new(portcullis_shared::aws::aws_config().await);
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
    let mut target = empty_database_shaped_like(&db).await;
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
    // Restore reads the whole backup before it touches the target: no migration, no table.
    let (_, mut target) = empty_database().await;
    let restored = backup.check(&manifest.backup_id, Some(&mut target)).await;
    assert!(matches!(restored, Err(BackupError::Mismatch(_))), "{restored:?}");
    assert!(table_names(&mut target).await.is_empty(), "a refused restore created tables");

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
        let mut target = empty_database_shaped_like(&db).await;
        assert!(backup.check(&manifest.backup_id, None).await.is_err(), "verify accepted: {name}");
        let before = row_counts(&mut target).await;
        assert!(
            backup.check(&manifest.backup_id, Some(&mut target)).await.is_err(),
            "restore accepted: {name}"
        );
        assert_eq!(row_counts(&mut target).await, before, "a refused restore wrote rows: {name}");
    }
}

#[tokio::test]
async fn an_unreachable_kms_fails_the_run_and_leaves_no_backup() {
    let db = TestDb::create().await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let conf = aws_sdk_kms::config::Builder::from(portcullis_shared::aws::aws_config().await)
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
    let sdk = portcullis_shared::aws::aws_config().await;
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

/// Tables of the shapes production data takes, at sizes that cross every
/// buffer: the chunk (16 KiB), zstd's block (128 KiB), the restore's batch
/// (500 rows), S3's part (8 MiB).
async fn seed_shapes(db: &TestDb) {
    let mut owner = db.owner_conn().await;
    for ddl in [
        // The shape of scripts/bench-backup.sh: 768 random hex characters a row.
        "CREATE TABLE hex_payloads (id INT PRIMARY KEY, payload VARCHAR(768) NOT NULL)",
        "CREATE TABLE binary_cells (id INT PRIMARY KEY, b LONGBLOB NULL)",
        "CREATE TABLE texts (id INT PRIMARY KEY, t LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL)",
        "CREATE TABLE typed (id BIGINT UNSIGNED PRIMARY KEY, d DECIMAL(30,10) NULL, f DOUBLE NULL, \
         at DATETIME(6) NULL, day DATE NULL, flags BIT(12) NULL, kind ENUM('a','b','c') NULL, j JSON NULL)",
        "CREATE TABLE one_row (id INT PRIMARY KEY, note VARCHAR(10) NULL)",
        "CREATE TABLE no_rows (id INT PRIMARY KEY)",
        "CREATE TABLE counted (id BIGINT AUTO_INCREMENT PRIMARY KEY, payload VARBINARY(1024) NOT NULL)",
    ] {
        owner.query_drop(ddl).await.expect("create");
    }
    owner
        .query_drop("INSERT INTO hex_payloads SELECT seq, HEX(RANDOM_BYTES(384)) FROM seq_1_to_300")
        .await
        .expect("hex rows");
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let mut binaries: Vec<Option<Vec<u8>>> = vec![None, Some(Vec::new()), Some(vec![0u8]), Some(every_byte)];
    for size in [16_383, 16_384, 16_385, 131_072, 131_073, 1 << 20, 3 * (1 << 20) + 7] {
        binaries
            .push(Some((0..size).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1]).collect()));
    }
    for (i, b) in binaries.into_iter().enumerate() {
        owner.exec_drop("INSERT INTO binary_cells VALUES (?, ?)", (i as i64, b)).await.expect("binary row");
    }
    let texts: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("NUL \0 inside, tab \t, newline \n, quote \" ' ` and backslash \\".into()),
        Some("𝄞 😀 🏳️‍🌈 — four-byte UTF-8 and a ZWJ sequence".into()),
        Some(r#"{"b":"looks like a binary cell"}"#.into()),
        Some("ünïcödé ".repeat(300_000)),
        Some("x".repeat(16 * 1024)),
    ];
    for (i, t) in texts.into_iter().enumerate() {
        owner.exec_drop("INSERT INTO texts VALUES (?, ?)", (i as i64, t)).await.expect("text row");
    }
    owner
        .query_drop(
            "INSERT INTO typed VALUES \
             (18446744073709551615, -12345678901234567890.0123456789, -0.0, '1970-01-01 00:00:01.000001', '9999-12-31', b'101010101010', 'c', '{\"k\": [1, null, \"😀\"]}'), \
             (1, 0.0000000001, 1.7976931348623157e308, '2038-01-19 03:14:08.999999', '0001-01-01', b'0', 'a', 'null'), \
             (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        )
        .await
        .expect("typed rows");
    owner.query_drop("INSERT INTO one_row VALUES (1, NULL)").await.expect("one row");
    // 9,000 rows of 1 KiB of random bytes: many chunks, restore batches and S3 parts.
    owner
        .query_drop("INSERT INTO counted (payload) SELECT RANDOM_BYTES(1024) FROM seq_1_to_9000")
        .await
        .expect("bulk");
}

async fn all_checksums(conn: &mut mysql_async::Conn, manifest: &Manifest) -> Vec<(String, Option<u64>)> {
    let tables: Vec<String> = manifest.tables.keys().cloned().collect();
    checksums(conn, &tables).await
}

/// Data of every shape backs up, verifies and restores with identical
/// checksums, on S3 (moto) across several multipart parts.
#[tokio::test]
async fn every_shape_of_data_backs_up_verifies_and_restores_with_identical_checksums() {
    let db = TestDb::create().await;
    seed_shapes(&db).await;
    let s3 = aws_sdk_s3::Client::new(portcullis_shared::aws::aws_config().await);
    let bucket = format!("pct-backups-{}", crate::helpers::hex_token());
    s3.create_bucket().bucket(&bucket).send().await.expect("moto CreateBucket");
    let backup = backup_with(Arc::new(S3Store { client: s3, bucket, kms_key_id: None }), &db.name).await;
    let manifest = backup.run(&mut db.user_conn("backup").await).await.expect("backup");
    assert_eq!(manifest.tables["hex_payloads"], 300);
    assert_eq!(manifest.tables["counted"], 9000);
    assert_eq!(manifest.tables["one_row"], 1);
    assert_eq!(manifest.tables["no_rows"], 0);
    assert!(
        manifest.ciphertext_bytes > 8 * 1024 * 1024,
        "more than one S3 part: {}",
        manifest.ciphertext_bytes
    );
    assert_eq!(backup.check(&manifest.backup_id, None).await.expect("verify"), manifest);

    let mut target = empty_database_shaped_like(&db).await;
    backup.check(&manifest.backup_id, Some(&mut target)).await.expect("restore");
    let mut source = db.owner_conn().await;
    let restored = all_checksums(&mut target, &manifest).await;
    assert!(restored.iter().all(|(_, sum)| sum.is_some()));
    assert_eq!(restored, all_checksums(&mut source, &manifest).await);
    // The counter is data too: the next id continues where the source's would.
    let next = "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'counted'";
    let theirs: Option<u64> = source.query_first(next).await.expect("source counter");
    let ours: Option<u64> = target.query_first(next).await.expect("target counter");
    assert_eq!(ours, theirs);
}

/// The operator's path: a database of the project's own schema restores into
/// a database with no tables at all; the restore applies the migrations and
/// runs no DDL from the backup.
#[tokio::test]
async fn a_backup_of_the_schema_restores_into_a_database_with_no_tables() {
    let db = TestDb::create().await;
    let mut owner = db.owner_conn().await;
    for i in 0..1200 {
        owner
            .exec_drop(
                "INSERT INTO audit_log (occurred_at, event_type, outcome, subject) VALUES (NOW(6), 'seed', 'success', ?)",
                (format!("😀 subject {i} {}", "é".repeat(i % 40)),),
            )
            .await
            .expect("audit row");
    }
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let backup = backup_with(Arc::new(LocalStore { dir }), &db.name).await;
    let manifest = backup.run(&mut db.user_conn("backup").await).await.expect("backup");
    let (_, mut target) = empty_database().await;
    backup.check(&manifest.backup_id, Some(&mut target)).await.expect("restore");
    assert_eq!(all_checksums(&mut target, &manifest).await, all_checksums(&mut owner, &manifest).await);
    assert_eq!(row_counts(&mut target).await, row_counts(&mut owner).await);
}

fn manifest_path(dir: &std::path::Path, backup_id: &str) -> std::path::PathBuf {
    dir.join(format!("manifests/{backup_id}.json"))
}

fn read_manifest(dir: &std::path::Path, backup_id: &str) -> Manifest {
    serde_json::from_slice(&std::fs::read(manifest_path(dir, backup_id)).expect("manifest")).expect("json")
}

/// Someone who can write to the bucket (the backup function's own role, say)
/// tries to pass one backup off as another: an older backup's manifest, another
/// database's, an edited field, an object copied under another key. Verify and
/// restore refuse each before writing anything (the target keeps no table).
#[tokio::test]
async fn a_backup_cannot_be_passed_off_as_another() {
    let db = TestDb::create().await;
    let other = TestDb::create().await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let store: Arc<dyn BackupStore> = Arc::new(LocalStore { dir: dir.clone() });
    // One backup key for both databases, as one deployment has.
    let keys: Arc<dyn KeyProvider> = Arc::new(KmsKeyProvider::new(kms_client().await, new_kms_key().await));
    let backup = backup_keyed(store.clone(), &db.name, keys.clone());
    let other_backup = backup_keyed(store, &other.name, keys);
    let mut owner = db.owner_conn().await;
    owner
        .query_drop("INSERT INTO audit_log (occurred_at, event_type, outcome, subject) VALUES (NOW(6), 'old', 'success', 'old')")
        .await
        .expect("row");
    let older = backup.run(&mut db.user_conn("backup").await).await.expect("older backup");
    owner
        .query_drop("INSERT INTO audit_log (occurred_at, event_type, outcome, subject) VALUES (NOW(6), 'new', 'success', 'new')")
        .await
        .expect("row");
    let newer = backup.run(&mut db.user_conn("backup").await).await.expect("newer backup");
    let foreign =
        other_backup.run(&mut other.user_conn("backup").await).await.expect("other database's backup");
    let genuine = std::fs::read(manifest_path(&dir, &newer.backup_id)).expect("manifest");
    let genuine_object = std::fs::read(dir.join(&newer.object_key)).expect("object");

    type Attack = Box<dyn Fn(&std::path::Path)>;
    let (older_id, newer_id, foreign_id) =
        (older.backup_id.clone(), newer.backup_id.clone(), foreign.backup_id.clone());
    let older_object = older.object_key.clone();
    let newer_object = newer.object_key.clone();
    let db_name = db.name.clone();
    let write_manifest = |dir: &std::path::Path, id: &str, m: &Manifest| {
        std::fs::write(manifest_path(dir, id), serde_json::to_vec(m).expect("json")).expect("write");
    };
    let attacks: Vec<(&str, Attack)> = vec![
        ("the older backup's manifest copied over the newer's", {
            let (o, n) = (older_id.clone(), newer_id.clone());
            Box::new(move |d| write_manifest(d, &n, &read_manifest(d, &o)))
        }),
        ("the older backup's manifest relabelled with the newer's id", {
            let (o, n) = (older_id.clone(), newer_id.clone());
            Box::new(move |d| {
                let mut m = read_manifest(d, &o);
                m.backup_id = n.clone();
                write_manifest(d, &n, &m)
            })
        }),
        ("another database's manifest copied over", {
            let (f, n) = (foreign_id.clone(), newer_id.clone());
            Box::new(move |d| write_manifest(d, &n, &read_manifest(d, &f)))
        }),
        ("another database's manifest relabelled to this database and id", {
            let (f, n, name) = (foreign_id.clone(), newer_id.clone(), db_name.clone());
            Box::new(move |d| {
                let mut m = read_manifest(d, &f);
                m.backup_id = n.clone();
                m.database = name.clone();
                write_manifest(d, &n, &m)
            })
        }),
        ("a row count edited", {
            let n = newer_id.clone();
            Box::new(move |d| {
                let mut m = read_manifest(d, &n);
                *m.tables.get_mut("audit_log").expect("audit_log") += 1;
                write_manifest(d, &n, &m)
            })
        }),
        ("the creation time edited", {
            let n = newer_id.clone();
            Box::new(move |d| {
                let mut m = read_manifest(d, &n);
                m.created_at -= 86_400;
                write_manifest(d, &n, &m)
            })
        }),
        ("the manifest pointed at the older object, digest and size to match", {
            let (n, o) = (newer_id.clone(), older_object.clone());
            Box::new(move |d| {
                let mut m = read_manifest(d, &n);
                let bytes = std::fs::read(d.join(&o)).expect("older object");
                m.object_key = o.clone();
                m.ciphertext_bytes = bytes.len() as u64;
                m.ciphertext_sha256 =
                    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes));
                write_manifest(d, &n, &m)
            })
        }),
        ("the older object copied under the newer's key", {
            let (o, n) = (older_object.clone(), newer_object.clone());
            Box::new(move |d| {
                std::fs::copy(d.join(&o), d.join(&n)).expect("copy");
            })
        }),
        ("the MAC removed", {
            let n = newer_id.clone();
            Box::new(move |d| {
                let mut m = read_manifest(d, &n);
                m.mac.clear();
                write_manifest(d, &n, &m)
            })
        }),
    ];
    for (name, attack) in attacks {
        std::fs::write(manifest_path(&dir, &newer.backup_id), &genuine).expect("reset manifest");
        std::fs::write(dir.join(&newer.object_key), &genuine_object).expect("reset object");
        attack(&dir);
        let verified = backup.check(&newer.backup_id, None).await;
        assert!(matches!(verified, Err(BackupError::Mismatch(_))), "verify: {name}: {verified:?}");
        let (_, mut target) = empty_database().await;
        let restored = backup.check(&newer.backup_id, Some(&mut target)).await;
        assert!(matches!(restored, Err(BackupError::Mismatch(_))), "restore: {name}: {restored:?}");
        assert!(table_names(&mut target).await.is_empty(), "{name}: the target was written to");
    }
    std::fs::write(manifest_path(&dir, &newer.backup_id), &genuine).expect("reset manifest");
    std::fs::write(dir.join(&newer.object_key), &genuine_object).expect("reset object");
    // Another database's deployment does not take this database's backup.
    let refused = other_backup.check(&newer.backup_id, None).await;
    assert!(matches!(refused, Err(BackupError::Mismatch(_))), "{refused:?}");
    assert!(matches!(backup.check("../manifests/x", None).await, Err(BackupError::Format(_))));
    // And the genuine article still restores.
    let (_, mut target) = empty_database().await;
    backup.check(&newer.backup_id, Some(&mut target)).await.expect("the genuine backup restores");
    let audit: Vec<String> =
        target.query("SELECT event_type FROM audit_log ORDER BY id").await.expect("audit");
    assert_eq!(audit, ["old", "new"]);
}

/// A target that holds rows, or has other tables, is refused before anything
/// is written; a restore that fails part-way (a table defined differently in
/// the target, met after other tables' rows went in) leaves the target empty.
#[tokio::test]
async fn restore_only_into_an_empty_target_and_a_failed_restore_leaves_it_as_found() {
    let db = TestDb::create().await;
    seed(&db).await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let backup = backup_with(Arc::new(LocalStore { dir }), &db.name).await;
    let manifest = backup.run(&mut db.user_conn("backup").await).await.expect("backup");

    let mut holds_rows = empty_database_shaped_like(&db).await;
    holds_rows
        .query_drop(
            "INSERT INTO audit_log (occurred_at, event_type, outcome) VALUES (NOW(6), 'mine', 'success')",
        )
        .await
        .expect("row");
    let before = row_counts(&mut holds_rows).await;
    let result = backup.check(&manifest.backup_id, Some(&mut holds_rows)).await;
    assert!(matches!(&result, Err(BackupError::Target(why)) if why.contains("audit_log")), "{result:?}");
    assert_eq!(row_counts(&mut holds_rows).await, before);

    let mut extra_table = empty_database_shaped_like(&db).await;
    extra_table.query_drop("CREATE TABLE leftover (id INT PRIMARY KEY)").await.expect("create");
    let result = backup.check(&manifest.backup_id, Some(&mut extra_table)).await;
    assert!(matches!(&result, Err(BackupError::Target(why)) if why.contains("leftover")), "{result:?}");

    // A database with no tables gets the migrations, which lack kitchen_sink: the
    // restore is refused and the migrated tables go again.
    let (_, mut bare) = empty_database().await;
    let result = backup.check(&manifest.backup_id, Some(&mut bare)).await;
    assert!(matches!(&result, Err(BackupError::Target(why)) if why.contains("kitchen_sink")), "{result:?}");
    assert!(table_names(&mut bare).await.is_empty(), "the migrated tables stayed behind");

    let mut differs = empty_database_shaped_like(&db).await;
    differs.query_drop("ALTER TABLE users ADD COLUMN nickname VARCHAR(20) NULL").await.expect("alter");
    let before = row_counts(&mut differs).await;
    let result = backup.check(&manifest.backup_id, Some(&mut differs)).await;
    assert!(matches!(&result, Err(BackupError::Target(why)) if why.contains("users")), "{result:?}");
    assert_eq!(row_counts(&mut differs).await, before);

    // A failure part-way, injected by a trigger on the last row of kitchen_sink: by
    // then audit_log and earlier batches of kitchen_sink went in. All of it goes again.
    let mut fails_late = empty_database_shaped_like(&db).await;
    fails_late
        .query_drop(
            "CREATE TRIGGER fail_late BEFORE INSERT ON kitchen_sink FOR EACH ROW \
             IF NEW.id = 299 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected failure'; END IF",
        )
        .await
        .expect("trigger");
    let before = row_counts(&mut fails_late).await;
    let result = backup.check(&manifest.backup_id, Some(&mut fails_late)).await;
    assert!(
        matches!(&result, Err(BackupError::Database(e)) if e.to_string().contains("injected")),
        "{result:?}"
    );
    assert_eq!(row_counts(&mut fails_late).await, before, "rows of a failed restore stayed behind");
    let fk: Option<u8> = fails_late.query_first("SELECT @@SESSION.foreign_key_checks").await.expect("fk");
    assert_eq!(fk, Some(1), "foreign key checks were left off on the operator's connection");
}

/// A local store with one fault injected.
enum Fault {
    /// Flips one byte of every object it keeps, as a bad disk or a bit flip in transit would.
    FlipsAByte,
    /// Its clock is this many seconds off the function's.
    ClockOff(i64),
}

struct Faulty(LocalStore, Fault);

#[async_trait::async_trait]
impl BackupStore for Faulty {
    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), BackupError> {
        let Fault::FlipsAByte = self.1 else {
            return self.0.put_file(key, path).await;
        };
        let mut bytes = std::fs::read(path)?;
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        let bad = path.with_extension("corrupt");
        std::fs::write(&bad, bytes)?;
        let stored = self.0.put_file(key, &bad).await;
        let _ = std::fs::remove_file(&bad);
        stored
    }
    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        self.0.put_bytes(key, bytes).await
    }
    async fn get_file(&self, key: &str, dest: &std::path::Path) -> Result<(), BackupError> {
        self.0.get_file(key, dest).await
    }
    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, BackupError> {
        self.0.get_bytes(key).await
    }
    async fn stored_at(&self, key: &str) -> Result<i64, BackupError> {
        let off = if let Fault::ClockOff(secs) = self.1 { secs } else { 0 };
        Ok(self.0.stored_at(key).await? + off)
    }
}

/// The run reads back what the store holds before writing the manifest: a
/// backup that does not read back fails the run (the Errors alarm) and never
/// gets a manifest.
#[tokio::test]
async fn a_backup_that_does_not_read_back_fails_the_run_and_gets_no_manifest() {
    let db = TestDb::create().await;
    seed(&db).await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let mut backup =
        backup_with(Arc::new(Faulty(LocalStore { dir: dir.clone() }, Fault::FlipsAByte)), &db.name).await;
    backup.scratch = dir.join("scratch");
    let result = backup.run(&mut db.user_conn("backup").await).await;
    assert!(matches!(result, Err(BackupError::Mismatch(_))), "{result:?}");
    let files = walk(&dir);
    assert!(files.iter().all(|f| !f.ends_with(".json")), "a manifest was written: {files:?}");
    assert!(files.iter().all(|f| !f.contains("scratch")), "scratch files left: {files:?}");
}

/// The shape `scripts/bench-backup.sh` measures, at the size first seen to fail:
/// 300 rows of 768 random hex characters, backed up by the CLI's code path
/// (local key, local directory), then verified and restored.
#[tokio::test]
async fn three_hundred_rows_of_random_hex_back_up_verify_and_restore() {
    let db = TestDb::create().await;
    let mut owner = db.owner_conn().await;
    // sql-splice-reviewed: a constant expression (24 random MD5s), no value from outside.
    let random = format!("CONCAT({}MD5(RAND()))", "MD5(RAND()),".repeat(23));
    owner
        .query_drop("CREATE TABLE rows_hex (id BIGINT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL, payload VARCHAR(1024) NOT NULL)")
        .await
        .expect("create");
    // sql-splice-reviewed: `random` is the constant expression built above.
    let insert = format!("INSERT INTO rows_hex (n, payload) SELECT seq, {random} FROM seq_1_to_300");
    owner.query_drop(insert).await.expect("rows");
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let key_file = dir.join("master.key");
    let keys =
        Arc::new(portcullis_shared::crypto::LocalKeyProvider::open_or_create(&key_file).expect("local key"));
    let backup = backup_keyed(Arc::new(LocalStore { dir: dir.clone() }), &db.name, keys);
    let manifest = backup.run(&mut db.user_conn("backup").await).await.expect("backup");
    assert_eq!(manifest.tables["rows_hex"], 300);
    backup.check(&manifest.backup_id, None).await.expect("verify");
    let mut target = empty_database_shaped_like(&db).await;
    backup.check(&manifest.backup_id, Some(&mut target)).await.expect("restore");
    assert_eq!(all_checksums(&mut target, &manifest).await, all_checksums(&mut owner, &manifest).await);
}

/// Whoever can write to the store (the backup function's role, say, holding a
/// fresh data key it may create for any id) cannot put new content under the id
/// of a backup that is there: every write creates, on S3 (`If-None-Match: *`,
/// honoured by moto; the bucket policy demands it) and on a local directory.
#[tokio::test]
async fn a_stored_backup_is_never_replaced() {
    let db = TestDb::create().await;
    let s3 = aws_sdk_s3::Client::new(portcullis_shared::aws::aws_config().await);
    let bucket = format!("pct-backups-{}", crate::helpers::hex_token());
    s3.create_bucket().bucket(&bucket).send().await.expect("moto CreateBucket");
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let stores: Vec<(&str, Arc<dyn BackupStore>)> = vec![
        ("S3", Arc::new(S3Store { client: s3, bucket, kms_key_id: None })),
        ("local", Arc::new(LocalStore { dir: dir.clone() })),
    ];
    for (name, store) in stores {
        let backup = backup_with(store.clone(), &db.name).await;
        let manifest = backup.run(&mut db.user_conn("backup").await).await.expect("backup");
        let manifest_key = format!("manifests/{}.json", manifest.backup_id);
        let stored_manifest = store.get_bytes(&manifest_key).await.expect("manifest");
        let stored_object = store.get_bytes(&manifest.object_key).await.expect("object");

        let replaced = store.put_bytes(&manifest_key, b"{}".to_vec()).await;
        assert!(matches!(replaced, Err(BackupError::Exists(_))), "{name}: manifest replaced: {replaced:?}");
        let forged = dir.join(format!("forged-{}", crate::helpers::hex_token()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(&forged, vec![0x42u8; 9 * 1024 * 1024]).expect("forged object");
        let replaced = store.put_file(&manifest.object_key, &forged).await;
        assert!(matches!(replaced, Err(BackupError::Exists(_))), "{name}: object replaced: {replaced:?}");

        assert_eq!(store.get_bytes(&manifest_key).await.expect("manifest"), stored_manifest, "{name}");
        assert_eq!(store.get_bytes(&manifest.object_key).await.expect("object"), stored_object, "{name}");
        backup.check(&manifest.backup_id, None).await.expect("the backup still verifies");
    }
}

/// A restore that fails while loading rows into a target that had no tables
/// (here the target session refuses the zero date the source allowed) leaves no
/// table behind: the migrations it applied go again with the rows.
#[tokio::test]
async fn a_restore_failing_in_a_database_with_no_tables_leaves_no_table() {
    let db = TestDb::create().await;
    let mut owner = db.owner_conn().await;
    owner.query_drop("SET SESSION sql_mode = ''").await.expect("lenient source");
    owner
        .query_drop(
            "INSERT INTO audit_log (occurred_at, event_type, outcome) VALUES ('0000-00-00 00:00:00', 'zero', 'success')",
        )
        .await
        .expect("a zero date");
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let backup = backup_with(Arc::new(LocalStore { dir }), &db.name).await;
    let manifest = backup.run(&mut db.user_conn("backup").await).await.expect("backup");
    let (_, mut target) = empty_database().await;
    target
        .query_drop("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE'")
        .await
        .expect("strict target");
    let result = backup.check(&manifest.backup_id, Some(&mut target)).await;
    assert!(matches!(result, Err(BackupError::Database(_))), "{result:?}");
    assert!(table_names(&mut target).await.is_empty(), "the migrated tables stayed behind");
}

/// An id whose manifest the store wrote long after the id was made was put
/// there later, as after the original expired (S3 lifecycle) by someone who
/// may create data keys for any id: refused. So is an id that is not a UUIDv7.
#[tokio::test]
async fn a_manifest_stored_long_after_its_id_was_made_is_refused() {
    let db = TestDb::create().await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let backup = backup_with(Arc::new(LocalStore { dir: dir.clone() }), &db.name).await;
    let manifest = backup.run(&mut db.user_conn("backup").await).await.expect("backup");
    backup.check(&manifest.backup_id, None).await.expect("a fresh backup verifies");
    let file = std::fs::File::options()
        .write(true)
        .open(manifest_path(&dir, &manifest.backup_id))
        .expect("manifest");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(91 * 86_400);
    file.set_modified(later).expect("set the time the store wrote it");
    let result = backup.check(&manifest.backup_id, None).await;
    assert!(matches!(&result, Err(BackupError::Mismatch(why)) if why.contains("stored")), "{result:?}");
    let v4 = uuid::Uuid::new_v4().to_string();
    assert!(matches!(
        backup.check(&v4, None).await,
        Err(BackupError::Format(_)) | Err(BackupError::NotFound(_))
    ));
}

/// One restore at a time into a database: while another holds the restore
/// lock, a second restore is refused and touches nothing.
#[tokio::test]
async fn a_second_restore_into_the_same_database_is_refused() {
    let db = TestDb::create().await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let backup = backup_with(Arc::new(LocalStore { dir }), &db.name).await;
    let manifest = backup.run(&mut db.user_conn("backup").await).await.expect("backup");
    let (name, mut target) = empty_database().await;
    let mut first =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&format!("{}/{name}", admin_url())).expect("url"))
            .await
            .expect("connect");
    let held: Option<u8> = first
        .exec_first("SELECT GET_LOCK(CONCAT('portcullis-restore:', LEFT(SHA2(DATABASE(), 256), 40)), 0)", ())
        .await
        .expect("lock");
    assert_eq!(held, Some(1));
    let result = backup.check(&manifest.backup_id, Some(&mut target)).await;
    assert!(
        matches!(&result, Err(BackupError::Target(why)) if why.contains("another restore")),
        "{result:?}"
    );
    assert!(table_names(&mut target).await.is_empty());
    first
        .query_drop("DO RELEASE_LOCK(CONCAT('portcullis-restore:', LEFT(SHA2(DATABASE(), 256), 40)))")
        .await
        .expect("release");
    backup.check(&manifest.backup_id, Some(&mut target)).await.expect("restores once the lock is free");
    // The lock is released after a restore: the same backup (seed rows only) restores again.
    backup.check(&manifest.backup_id, Some(&mut target)).await.expect("the lock was released");
}

/// A run whose manifest would later be refused for its time (a run that took
/// hours, or clocks hours apart) fails there and then, not at restore.
#[tokio::test]
async fn a_run_whose_manifest_would_be_refused_for_its_time_fails() {
    let db = TestDb::create().await;
    let dir = std::env::temp_dir().join(format!("pc-backups-{}", crate::helpers::hex_token()));
    let backup = backup_with(Arc::new(Faulty(LocalStore { dir }, Fault::ClockOff(2 * 3600))), &db.name).await;
    let result = backup.run(&mut db.user_conn("backup").await).await;
    assert!(
        matches!(&result, Err(BackupError::Mismatch(why)) if why.contains("will not verify")),
        "{result:?}"
    );
}
