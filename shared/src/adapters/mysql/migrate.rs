//! Applies the schema migrations under `infra/mysql/migrations`, each once, in
//! order, recorded in `schema_migrations`. The SQL files are compiled in, so a
//! deployed binary and its schema always agree.

use super::unavailable;
use crate::store::StoreError;
use mysql_async::prelude::Queryable;

/// `(version, sql)` in order.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../../../infra/mysql/migrations/0001_init.sql")),
    (2, include_str!("../../../../infra/mysql/migrations/0002_audit_actor.sql")),
    (3, include_str!("../../../../infra/mysql/migrations/0003_mfa.sql")),
    (4, include_str!("../../../../infra/mysql/migrations/0004_key_revocation.sql")),
];

/// The tables the migrations themselves write rows into (`schema_migrations`,
/// and seed data such as the built-in roles): a freshly migrated database is
/// "empty" but for these.
pub fn seeded_tables() -> std::collections::BTreeSet<String> {
    let mut tables = std::collections::BTreeSet::from(["schema_migrations".to_owned()]);
    for (_, sql) in MIGRATIONS {
        for statement in statements(sql) {
            let words: Vec<&str> = statement.split_whitespace().take(3).collect();
            if let [insert, into, table] = words[..] {
                if insert.eq_ignore_ascii_case("INSERT") && into.eq_ignore_ascii_case("INTO") {
                    let name = table.split('(').next().unwrap_or_default().trim_matches('`');
                    tables.insert(name.to_owned());
                }
            }
        }
    }
    tables
}

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
    fn the_seeded_tables_are_the_migrations_own_and_the_built_in_roles() {
        let seeded: Vec<String> = seeded_tables().into_iter().collect();
        assert_eq!(seeded, ["roles", "schema_migrations"]);
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
