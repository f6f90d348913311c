//! The file's safety settings; the ports' behaviour is the store contract suite
//! (`tests/integration/store_contract`), run against every backend.

use super::SqliteStore;
use crate::audit::AuditStore;
use crate::store::StoreError;
use std::os::unix::fs::PermissionsExt;

fn temp_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pc-sqlite-{}", uuid::Uuid::new_v4())).join(".portcullis/portcullis.db")
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

#[tokio::test]
async fn the_file_is_owner_only_durable_and_versioned() {
    let path = temp_path();
    let store = SqliteStore::open(&path, 0).await.expect("opens");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().expect("folder")), 0o700);
    let pragmas = store
        .run(|conn| {
            let get = |name: &str| -> rusqlite::Result<String> {
                conn.query_row(name, [], |r| r.get::<_, rusqlite::types::Value>(0)).map(|v| format!("{v:?}"))
            };
            Ok((
                get("PRAGMA journal_mode").map_err(super::classify)?,
                get("PRAGMA synchronous").map_err(super::classify)?,
                get("PRAGMA foreign_keys").map_err(super::classify)?,
                get("PRAGMA user_version").map_err(super::classify)?,
            ))
        })
        .await
        .expect("pragmas");
    assert_eq!(pragmas.0, "Text(\"wal\")");
    assert_eq!(pragmas.1, "Integer(2)", "synchronous = FULL");
    assert_eq!(pragmas.2, "Integer(1)");
    assert_eq!(pragmas.3, format!("Integer({})", super::schema::VERSION));
    drop(store);
    SqliteStore::open(&path, 0).await.expect("a second open migrates nothing and succeeds");
}

#[tokio::test]
async fn a_file_other_users_can_read_is_refused() {
    let path = temp_path();
    drop(SqliteStore::open(&path, 0).await.expect("opens"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = SqliteStore::open(&path, 0).await.expect_err("refused");
    assert!(err.to_string().contains("unavailable"), "{err}");
    assert!(matches!(err, StoreError::Unavailable(e) if e.to_string().contains("chmod 600")));
}

#[tokio::test]
async fn a_file_from_a_newer_build_is_refused() {
    let path = temp_path();
    let store = SqliteStore::open(&path, 0).await.expect("opens");
    store
        .run(|conn| conn.pragma_update(None, "user_version", 999).map_err(super::classify))
        .await
        .expect("set");
    drop(store);
    assert!(matches!(SqliteStore::open(&path, 0).await, Err(StoreError::Corrupt(_))));
}

#[tokio::test]
async fn the_audit_log_refuses_changes() {
    let store = SqliteStore::open(&temp_path(), 0).await.expect("opens");
    let event = crate::audit::AuditEvent {
        event_type: crate::audit::EventType::LoginSuccess,
        subject: Some("u".into()),
        actor: None,
        detail: None,
        source_ip: None,
        user_agent: None,
        request_id: None,
        occurred_at: 1,
        reason: None,
    };
    store.append(&event).await.expect("appends");
    for sql in ["UPDATE audit_log SET subject = 'x'", "DELETE FROM audit_log"] {
        let refused = store.run(move |conn| conn.execute(sql, []).map_err(super::classify)).await;
        assert!(refused.is_err(), "{sql}");
    }
}
