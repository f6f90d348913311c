//! Each function's database user can do what its role grants and nothing else
//! (DESIGN: least privilege in MySQL). Statements are run as the real users.

use crate::helpers::TestDb;
use mysql_async::prelude::Queryable;

const SELECT_USER_IDS: &str = "SELECT id FROM users";
const SELECT_PASSWORD_HASHES: &str = "SELECT password_hash FROM users";
const SELECT_EMAILS: &str = "SELECT email_ciphertext FROM users";
const UPDATE_PASSWORD: &str = "UPDATE users SET password_hash = 'x', updated_at = NOW(6) WHERE id = 0x00";
const UPDATE_MFA: &str = "UPDATE users SET mfa_enabled = TRUE, updated_at = NOW(6) WHERE id = 0x00";
const DELETE_USERS: &str = "DELETE FROM users WHERE id = 0x00";
const APPEND_AUDIT: &str =
    "INSERT INTO audit_log (occurred_at, event_type, outcome) VALUES (NOW(6), 'test', 'success')";
const READ_AUDIT: &str = "SELECT event_type FROM audit_log";
const REWRITE_AUDIT: &str = "UPDATE audit_log SET outcome = 'forged'";
const ERASE_AUDIT: &str = "DELETE FROM audit_log";
const READ_PUBLIC_KEYS: &str = "SELECT kid, public_key FROM key_material";
const READ_WRAPPED_KEYS: &str = "SELECT wrapped_key, sealed FROM key_material";
/// What a verifier reads: the public keys and which of them are revoked.
const READ_KEY_REVOCATIONS: &str = "SELECT kid, public_key, revoked_at FROM key_material";
/// Undoing a revocation (or revoking a key): the schema owner's alone (`portcullis keys revoke`).
const UNREVOKE_KEYS: &str = "UPDATE key_material SET revoked_at = NULL";
const DELETE_ROLE_GRANTS: &str = "DELETE FROM user_roles WHERE user_id = 0x00";
const GRANT_ROLES: &str = "INSERT INTO user_roles (user_id, role, granted_at) SELECT id, 'admin', NOW(6) FROM users WHERE id = 0x00";
const DROP_TABLE: &str = "DROP TABLE users";
const CREATE_TABLE: &str = "CREATE TABLE intruder (a INT)";
const READ_MYSQL_USERS: &str = "SELECT user, host FROM mysql.user";

/// Server error codes for "access denied" (table, column, database, global).
const DENIED: [u16; 5] = [1142, 1143, 1044, 1227, 1045];

async fn check(db: &TestDb, function: &str, allowed: &[&str], denied: &[&str]) {
    let mut conn = db.user_conn(function).await;
    for statement in allowed {
        if let Err(err) = conn.query_drop(*statement).await {
            panic!("{function} was refused `{statement}`, which its role grants: {err}");
        }
    }
    for statement in denied {
        match conn.query_drop(*statement).await {
            Ok(()) => panic!("{function} was allowed `{statement}`, which its role does not grant"),
            Err(mysql_async::Error::Server(e)) if DENIED.contains(&e.code) => {}
            Err(other) => panic!("{function} got an unexpected error for `{statement}`: {other}"),
        }
    }
}

const ALWAYS_DENIED: [&str; 6] =
    [REWRITE_AUDIT, ERASE_AUDIT, DROP_TABLE, CREATE_TABLE, READ_MYSQL_USERS, UNREVOKE_KEYS];

#[tokio::test]
async fn login_user_manages_credentials_but_cannot_touch_the_audit_trail() {
    let db = TestDb::create().await;
    let allowed = [SELECT_USER_IDS, SELECT_PASSWORD_HASHES, UPDATE_PASSWORD, APPEND_AUDIT, READ_WRAPPED_KEYS];
    let denied = [UPDATE_MFA, DELETE_USERS, READ_AUDIT, DELETE_ROLE_GRANTS];
    check(&db, "login", &allowed, &[&denied[..], &ALWAYS_DENIED[..]].concat()).await;
}

#[tokio::test]
async fn mfa_user_flips_mfa_state_but_never_reads_password_hashes() {
    let db = TestDb::create().await;
    let allowed = [SELECT_USER_IDS, SELECT_EMAILS, UPDATE_MFA, APPEND_AUDIT, READ_WRAPPED_KEYS];
    let denied = [SELECT_PASSWORD_HASHES, UPDATE_PASSWORD, DELETE_USERS, GRANT_ROLES];
    check(&db, "mfa", &allowed, &[&denied[..], &ALWAYS_DENIED[..]].concat()).await;
}

#[tokio::test]
async fn refresh_user_reads_ids_only() {
    let db = TestDb::create().await;
    let allowed = [SELECT_USER_IDS, APPEND_AUDIT, READ_PUBLIC_KEYS];
    let denied = [SELECT_PASSWORD_HASHES, SELECT_EMAILS, UPDATE_MFA, UPDATE_PASSWORD, GRANT_ROLES];
    check(&db, "refresh", &allowed, &[&denied[..], &ALWAYS_DENIED[..]].concat()).await;
}

#[tokio::test]
async fn authorizer_user_reads_public_keys_and_nothing_else() {
    let db = TestDb::create().await;
    let allowed = [READ_PUBLIC_KEYS, READ_KEY_REVOCATIONS];
    let denied = [READ_WRAPPED_KEYS, SELECT_USER_IDS, APPEND_AUDIT, GRANT_ROLES];
    check(&db, "authorizer", &allowed, &[&denied[..], &ALWAYS_DENIED[..]].concat()).await;
}

#[tokio::test]
async fn admin_user_manages_roles_and_searches_the_audit_trail_but_not_passwords() {
    let db = TestDb::create().await;
    let allowed = [SELECT_USER_IDS, SELECT_EMAILS, DELETE_ROLE_GRANTS, GRANT_ROLES, APPEND_AUDIT, READ_AUDIT];
    let denied = [SELECT_PASSWORD_HASHES, UPDATE_PASSWORD, UPDATE_MFA, DELETE_USERS];
    check(&db, "admin", &allowed, &[&denied[..], &ALWAYS_DENIED[..]].concat()).await;
}

#[tokio::test]
async fn backup_user_reads_everything_and_writes_nothing() {
    let db = TestDb::create().await;
    let allowed = [SELECT_PASSWORD_HASHES, READ_AUDIT, READ_WRAPPED_KEYS];
    let denied = [APPEND_AUDIT, UPDATE_PASSWORD, DELETE_USERS, GRANT_ROLES];
    check(&db, "backup", &allowed, &[&denied[..], &ALWAYS_DENIED[..]].concat()).await;
}

#[tokio::test]
async fn auditor_reads_the_audit_trail_only() {
    let db = TestDb::create().await;
    let allowed = [READ_AUDIT];
    let denied = [SELECT_USER_IDS, APPEND_AUDIT, READ_PUBLIC_KEYS];
    check(&db, "auditor", &allowed, &[&denied[..], &ALWAYS_DENIED[..]].concat()).await;
}
