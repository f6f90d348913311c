//! The typed, line-delimited dump: per table its `SHOW CREATE TABLE`, every row
//! as cells (NULL, or the exact bytes the server sent: text when UTF-8, else
//! base64), and a row count.
//! Rows stream from one consistent snapshot and are restored with prepared
//! statements: no SQL text is assembled from values.

use crate::restore::Target;
use crate::BackupError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mysql_async::prelude::Queryable;
use mysql_async::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

/// One cell: the exact bytes the server sent, as text when they are UTF-8
/// (compresses far better) and base64 otherwise.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Text(String),
    Binary { b: String },
}

impl Cell {
    fn of(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => Cell::Text(text),
            Err(raw) => Cell::Binary { b: STANDARD.encode(raw.into_bytes()) },
        }
    }

    fn into_bytes(self) -> Result<Vec<u8>, BackupError> {
        match self {
            Cell::Text(text) => Ok(text.into_bytes()),
            Cell::Binary { b } => STANDARD.decode(b).map_err(|_| BackupError::Format("cell encoding".into())),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    Table { name: String, create: String },
    Row { cells: Vec<Option<Cell>> },
    End { name: String, rows: u64 },
}

/// Table names are identifiers of our own schema; anything else is refused.
pub(crate) fn ident(name: &str) -> Result<&str, BackupError> {
    if !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(name)
    } else {
        Err(BackupError::Format(format!("unexpected table name {name:?}")))
    }
}

fn line(out: &mut impl Write, record: &Record) -> Result<(), BackupError> {
    serde_json::to_writer(&mut *out, record).map_err(|e| BackupError::Format(e.to_string()))?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Dumps every base table from one consistent snapshot into `out`; row counts by table.
pub async fn dump(
    conn: &mut mysql_async::Conn,
    out: &mut impl Write,
) -> Result<BTreeMap<String, u64>, BackupError> {
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await?;
    let tables: Vec<(String, String)> = conn.query("SHOW FULL TABLES").await?;
    let mut counts = BTreeMap::new();
    for (name, kind) in tables.into_iter().filter(|(_, kind)| kind == "BASE TABLE") {
        let _ = kind;
        let table = ident(&name)?;
        // sql-splice-reviewed: a table name cannot be a parameter; ident() allows [A-Za-z0-9_] only.
        let show = format!("SHOW CREATE TABLE `{table}`");
        let (_, create): (String, String) = conn
            .query_first(show)
            .await?
            .ok_or_else(|| BackupError::Format(format!("no DDL for {table}")))?;
        line(out, &Record::Table { name: table.to_owned(), create })?;
        // sql-splice-reviewed: as above; the text protocol returns each cell's exact bytes.
        let select = format!("SELECT * FROM `{table}`");
        let mut result = conn.query_iter(select).await?;
        let mut rows = 0u64;
        let mut failure: Option<BackupError> = None;
        result
            .for_each(|row| {
                if failure.is_some() {
                    return;
                }
                let cells = row
                    .unwrap()
                    .into_iter()
                    .map(|v| match v {
                        Value::NULL => None,
                        Value::Bytes(b) => Some(Cell::of(b)),
                        other => Some(Cell::of(other.as_sql(true).into_bytes())),
                    })
                    .collect();
                match line(out, &Record::Row { cells }) {
                    Ok(()) => rows += 1,
                    Err(e) => failure = Some(e),
                }
            })
            .await?;
        if let Some(err) = failure {
            return Err(err);
        }
        line(out, &Record::End { name: table.to_owned(), rows })?;
        counts.insert(table.to_owned(), rows);
    }
    conn.query_drop("COMMIT").await?;
    Ok(counts)
}

/// The table a dump is inside: its name, its INSERT statement and row width
/// (once a row arrived), and the rows read so far.
struct OpenTable {
    name: String,
    insert: Option<(String, usize)>,
    rows: u64,
}

/// Reads a dump, checking its structure and counts; writes its rows into
/// `target` when given. Row counts by table. The caller commits the target
/// only after comparing these counts with the manifest's.
pub async fn load(
    input: impl BufRead,
    mut target: Option<&mut Target<'_>>,
) -> Result<BTreeMap<String, u64>, BackupError> {
    const BATCH: usize = 500;
    let mut counts = BTreeMap::new();
    let mut current: Option<OpenTable> = None;
    let mut batch: Vec<Vec<Value>> = Vec::new();
    for raw in input.lines() {
        let raw = raw?;
        let record: Record =
            serde_json::from_str(&raw).map_err(|e| BackupError::Format(format!("dump record: {e}")))?;
        match record {
            Record::Table { name, create } => {
                if current.is_some() {
                    return Err(BackupError::Format("table started before the previous ended".into()));
                }
                let table = ident(&name)?.to_owned();
                if counts.contains_key(&table) {
                    return Err(BackupError::Format(format!("table {table} appears twice")));
                }
                if let Some(target) = target.as_deref_mut() {
                    target.begin_table(&table, &create).await?;
                }
                current = Some(OpenTable { name: table, insert: None, rows: 0 });
            }
            Record::Row { cells } => {
                let Some(OpenTable { name: table, insert, rows }) = current.as_mut() else {
                    return Err(BackupError::Format("row outside a table".into()));
                };
                *rows += 1;
                if let Some(target) = target.as_deref_mut() {
                    let width = cells.len();
                    match insert {
                        Some((_, known)) if *known != width => {
                            return Err(BackupError::Format(format!("{table}: rows of different widths")))
                        }
                        Some(_) => {}
                        None => {
                            let marks = vec!["?"; width].join(", ");
                            // sql-splice-reviewed: identifier checked by ident() and present in the target; values are bound parameters.
                            *insert = Some((format!("INSERT INTO `{table}` VALUES ({marks})"), width));
                        }
                    }
                    let statement = insert.as_ref().map(|(sql, _)| sql.as_str()).unwrap_or_default();
                    let values = cells
                        .into_iter()
                        .map(|c| match c {
                            None => Ok(Value::NULL),
                            Some(cell) => cell.into_bytes().map(Value::Bytes),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    batch.push(values);
                    if batch.len() == BATCH {
                        target.insert(statement, &mut batch).await?;
                    }
                }
            }
            Record::End { name, rows } => {
                let Some(OpenTable { name: table, insert, rows: seen }) = current.take() else {
                    return Err(BackupError::Format("end outside a table".into()));
                };
                if let (Some(target), Some((statement, _))) = (target.as_deref_mut(), insert) {
                    target.insert(&statement, &mut batch).await?;
                }
                if table != name || seen != rows {
                    return Err(BackupError::Format(format!("{name}: {seen} rows read, {rows} recorded")));
                }
                counts.insert(table, rows);
            }
        }
    }
    if current.is_some() {
        return Err(BackupError::Format("dump ends inside a table".into()));
    }
    Ok(counts)
}
