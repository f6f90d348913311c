//! The restore target. A restore runs no SQL text taken from the backup: the
//! target's tables come from the project's migrations (applied here when the
//! target has no tables) or were created by the operator, and each table of the
//! backup must match one of them exactly (its `SHOW CREATE TABLE`, the
//! auto-increment counter aside) before a row is written. The target must hold
//! no rows but those the migrations seed (`schema_migrations`, the built-in
//! roles), which give way to the backup's own; rows go in through prepared
//! statements, in one transaction that commits only once the whole backup has
//! been read and every count matches.

use crate::BackupError;
use mysql_async::prelude::Queryable;
use mysql_async::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A database readied for one restore.
pub struct Target<'a> {
    conn: &'a mut mysql_async::Conn,
    /// Normalized `SHOW CREATE TABLE` of every table of the target.
    schema: BTreeMap<String, String>,
    /// Tables whose rows the migrations wrote: replaced by the backup's.
    seeded: BTreeSet<String>,
    /// Tables this restore created (the migrations, on a target that had none):
    /// dropped again when the restore fails.
    created: Vec<String>,
    started: bool,
}

/// `SHOW CREATE TABLE` text without the auto-increment counter, which is data
/// (the next id), not shape.
pub fn normalize_ddl(ddl: &str) -> String {
    const COUNTER: &str = " AUTO_INCREMENT=";
    let mut out = String::with_capacity(ddl.len());
    let mut rest = ddl;
    while let Some(at) = rest.find(COUNTER) {
        let after = &rest[at + COUNTER.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push_str(&rest[..at + COUNTER.len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

async fn release(conn: &mut mysql_async::Conn) {
    let _ = conn
        .query_drop("DO RELEASE_LOCK(CONCAT('portcullis-restore:', LEFT(SHA2(DATABASE(), 256), 40)))")
        .await;
}

/// Best effort: the tables a refused restore created go again.
async fn drop_tables(conn: &mut mysql_async::Conn, names: &[String]) {
    let _ = conn.query_drop("SET SESSION FOREIGN_KEY_CHECKS = 0").await;
    for table in names {
        // sql-splice-reviewed: names from table_names(), checked by ident().
        let _ = conn.query_drop(format!("DROP TABLE IF EXISTS `{table}`")).await;
    }
    let _ = conn.query_drop("SET SESSION FOREIGN_KEY_CHECKS = 1").await;
}

async fn table_names(conn: &mut mysql_async::Conn) -> Result<Vec<String>, BackupError> {
    let tables: Vec<(String, String)> = conn.query("SHOW FULL TABLES").await?;
    tables.into_iter().map(|(name, _kind)| crate::dump::ident(&name).map(str::to_owned)).collect()
}

impl<'a> Target<'a> {
    /// Checks, before any row is written, that `conn`'s database can take a
    /// backup whose tables are defined by `ddl`: exactly those tables, each
    /// defined the same, none holding rows. A database with no tables first
    /// gets the project's migrations, and loses them again when a check fails,
    /// so a refused restore leaves the target as it was found.
    pub async fn prepare(
        conn: &'a mut mysql_async::Conn,
        ddl: &BTreeMap<String, String>,
    ) -> Result<Target<'a>, BackupError> {
        // One restore at a time into a database: a second would see the tables the
        // first is creating, and could drop them again. The name hashes the database's
        // (MySQL allows 64 characters).
        let locked: Option<Option<u8>> = conn
            .query_first("SELECT GET_LOCK(CONCAT('portcullis-restore:', LEFT(SHA2(DATABASE(), 256), 40)), 0)")
            .await?;
        if locked.flatten() != Some(1) {
            return Err(BackupError::Target("another restore into this database is running".into()));
        }
        match Self::ready(conn, ddl).await {
            Ok((schema, created)) => {
                let seeded = portcullis_shared::adapters::mysql::seeded_tables();
                Ok(Target { conn, schema, seeded, created, started: false })
            }
            Err(err) => {
                release(conn).await;
                Err(err)
            }
        }
    }

    /// The target's schema, and the tables migrated into it (none unless it had none).
    async fn ready(
        conn: &mut mysql_async::Conn,
        ddl: &BTreeMap<String, String>,
    ) -> Result<(BTreeMap<String, String>, Vec<String>), BackupError> {
        let mut names = table_names(conn).await?;
        names.sort();
        let migrated = names.is_empty();
        if migrated {
            let applied = portcullis_shared::adapters::mysql::apply_migrations(conn).await;
            names = table_names(conn).await?;
            names.sort();
            if let Err(e) = applied {
                drop_tables(conn, &names).await;
                return Err(BackupError::Target(format!("applying the schema migrations: {e}")));
            }
        }
        match Self::schema_of(conn, &names, ddl).await {
            Ok(schema) => Ok((schema, if migrated { names } else { Vec::new() })),
            Err(err) => {
                if migrated {
                    drop_tables(conn, &names).await;
                }
                Err(err)
            }
        }
    }

    async fn schema_of(
        conn: &mut mysql_async::Conn,
        names: &[String],
        ddl: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, BackupError> {
        let expected: Vec<&String> = ddl.keys().collect();
        let found: Vec<&String> = names.iter().collect();
        if found != expected {
            return Err(BackupError::Target(format!(
                "the target's tables {found:?} are not the backup's {expected:?}: restore into an empty \
                 database, or one whose schema is the backup's"
            )));
        }
        let seeded = portcullis_shared::adapters::mysql::seeded_tables();
        let mut schema = BTreeMap::new();
        for table in names {
            // sql-splice-reviewed: `table` passed ident() ([A-Za-z0-9_]) in table_names().
            let show = format!("SHOW CREATE TABLE `{table}`");
            let (_, ours): (String, String) = conn
                .query_first(show)
                .await?
                .ok_or_else(|| BackupError::Target(format!("no definition for {table}")))?;
            let ours = normalize_ddl(&ours);
            if ddl.get(table).map(|theirs| normalize_ddl(theirs)) != Some(ours.clone()) {
                return Err(BackupError::Target(format!(
                    "table {table} is defined differently in the backup and in the target (another \
                     schema version?): nothing was restored"
                )));
            }
            if !seeded.contains(table) {
                // sql-splice-reviewed: as above.
                let any: Option<u8> = conn.query_first(format!("SELECT 1 FROM `{table}` LIMIT 1")).await?;
                if any.is_some() {
                    return Err(BackupError::Target(format!(
                        "table {table} of the target holds rows: restore only into an empty database"
                    )));
                }
            }
            schema.insert(table.clone(), ours);
        }
        Ok(schema)
    }

    async fn start(&mut self) -> Result<(), BackupError> {
        if !self.started {
            self.conn.query_drop("SET SESSION FOREIGN_KEY_CHECKS = 0").await?;
            self.conn.query_drop("START TRANSACTION").await?;
            self.started = true;
        }
        Ok(())
    }

    /// A table of the backup begins: its definition must be the target's.
    pub async fn begin_table(&mut self, table: &str, ddl: &str) -> Result<(), BackupError> {
        match self.schema.get(table) {
            Some(ours) if *ours == normalize_ddl(ddl) => {}
            Some(_) => {
                return Err(BackupError::Target(format!(
                    "table {table} is defined differently in the backup and in the target (another \
                     schema version?): nothing was restored"
                )))
            }
            None => return Err(BackupError::Target(format!("the target has no table {table}"))),
        }
        self.start().await?;
        if self.seeded.contains(table) {
            // The rows the migrations wrote give way to the backup's own.
            // sql-splice-reviewed: `table` is a key of `schema`, names checked by ident().
            self.conn.query_drop(format!("DELETE FROM `{table}`")).await?;
        }
        Ok(())
    }

    /// Inserts rows (`values`, `width` to a row) into a table begun with
    /// [`Target::begin_table`], as one prepared multi-row INSERT.
    pub async fn insert(&mut self, table: &str, width: usize, values: Vec<Value>) -> Result<(), BackupError> {
        if !self.schema.contains_key(table) || width == 0 || !values.len().is_multiple_of(width) {
            return Err(BackupError::Format(format!("rows for {table} do not fit it")));
        }
        let row = format!("({})", vec!["?"; width].join(", "));
        let rows = vec![row.as_str(); values.len() / width].join(", ");
        // sql-splice-reviewed: `table` is a table of the target (checked above), its name passed ident(); values are bound parameters.
        let statement = format!("INSERT INTO `{table}` VALUES {rows}");
        self.conn.exec_drop(statement, values).await?;
        Ok(())
    }

    /// Makes the restore visible: called only once every check has passed.
    pub async fn commit(self) -> Result<(), BackupError> {
        let committed = async {
            if self.started {
                self.conn.query_drop("COMMIT").await?;
                self.conn.query_drop("SET SESSION FOREIGN_KEY_CHECKS = 1").await?;
            }
            Ok(())
        }
        .await;
        release(self.conn).await;
        committed
    }

    /// Undoes every row written, and drops the tables this restore created:
    /// the target is left as it was found.
    pub async fn abandon(self) {
        if self.started {
            let _ = self.conn.query_drop("ROLLBACK").await;
            let _ = self.conn.query_drop("SET SESSION FOREIGN_KEY_CHECKS = 1").await;
        }
        if !self.created.is_empty() {
            drop_tables(self.conn, &self.created).await;
        }
        release(self.conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_ddl;

    #[test]
    fn only_the_auto_increment_counter_is_dropped() {
        let ddl = "CREATE TABLE `t` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n) \
                   ENGINE=InnoDB AUTO_INCREMENT=32769 DEFAULT CHARSET=utf8mb4";
        assert_eq!(
            normalize_ddl(ddl),
            "CREATE TABLE `t` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        );
        assert_eq!(normalize_ddl("a AUTO_INCREMENT=x b"), "a AUTO_INCREMENT=x b");
        assert_eq!(normalize_ddl("COMMENT 'AUTO_INCREMENT=' x"), "COMMENT 'AUTO_INCREMENT=' x");
    }
}
