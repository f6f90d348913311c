//! Applies the schema migrations under `infra/mysql/migrations`, each once, in
//! order, recorded in `schema_migrations`. The SQL files are compiled in, so a
//! deployed binary and its schema always agree.

use super::StoreError;
use mysql_async::prelude::Queryable;

/// `(version, sql)` in order.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../../infra/mysql/migrations/0001_init.sql")),
    (2, include_str!("../../../infra/mysql/migrations/0002_audit_actor.sql")),
    (3, include_str!("../../../infra/mysql/migrations/0003_mfa.sql")),
];

/// Splits a migration file into statements at `;` line ends, dropping `--` comments.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// Applies every migration not yet recorded. Needs DDL rights: run it as the
/// schema owner, never as a function's user.
pub async fn apply_migrations(conn: &mut mysql_async::Conn) -> Result<Vec<u32>, StoreError> {
    let unavailable = |e: mysql_async::Error| StoreError::Unavailable(Box::new(e));
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INT UNSIGNED PRIMARY KEY, applied_at DATETIME(6) NOT NULL)",
    )
    .await
    .map_err(unavailable)?;
    let applied: Vec<u32> = conn.query("SELECT version FROM schema_migrations").await.map_err(unavailable)?;
    let mut done = Vec::new();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        // DDL is static text compiled into the binary; no value is spliced in.
        for statement in statements(sql) {
            conn.query_drop(statement).await.map_err(unavailable)?;
        }
        conn.exec_drop("INSERT INTO schema_migrations (version, applied_at) VALUES (?, NOW(6))", (version,))
            .await
            .map_err(unavailable)?;
        done.push(*version);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_line_ends_and_drop_comments() {
        let s = statements("-- c\nCREATE TABLE a (x INT);\n\nINSERT INTO a VALUES (1),\n (2);\n");
        assert_eq!(
            s,
            vec!["CREATE TABLE a (x INT)".to_string(), "INSERT INTO a VALUES (1),\n (2)".to_string()]
        );
    }

    #[test]
    fn the_initial_migration_creates_the_identity_tables() {
        let all = statements(MIGRATIONS[0].1).join("\n");
        for table in [
            "TABLE users (",
            "TABLE roles (",
            "TABLE user_roles (",
            "TABLE audit_log (",
            "TABLE key_material (",
        ] {
            assert!(all.contains(table), "{table} missing");
        }
    }
}
