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
use std::io::{BufRead, Read, Write};

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

/// What a dump holds: rows and `SHOW CREATE TABLE` text by table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: BTreeMap<String, u64>,
    pub ddl: BTreeMap<String, String>,
}

/// The longest record line read (a row of max_allowed_packet's 1 GiB limit
/// would not restore either); a longer one fails instead of exhausting memory.
const MAX_LINE: u64 = 256 * 1024 * 1024;
/// Rows and bytes sent in one multi-row INSERT: few round trips, far below
/// MariaDB's 65,535 placeholders and its default 16 MiB packet.
const BATCH_ROWS: usize = 1000;
const BATCH_PLACEHOLDERS: usize = 60_000;
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The table a dump is inside: its name, the width of its rows (once one
/// arrived), the rows read so far, and the rows not yet sent with their size.
struct OpenTable {
    name: String,
    width: Option<usize>,
    rows: u64,
    batch: Vec<Value>,
    batch_bytes: usize,
}

impl OpenTable {
    /// Takes one row, checked against the table's width (its cells kept for
    /// the target when `keep`); true when the batch is due to be written.
    fn push_row(&mut self, cells: Vec<Option<Cell>>, keep: bool) -> Result<bool, BackupError> {
        let width = *self.width.get_or_insert(cells.len());
        if cells.len() != width || width == 0 {
            return Err(BackupError::Format(format!("{}: rows of different widths", self.name)));
        }
        self.rows += 1;
        for cell in cells {
            let value = match cell {
                None => Value::NULL,
                Some(cell) => Value::Bytes(cell.into_bytes()?),
            };
            if let Value::Bytes(bytes) = &value {
                self.batch_bytes += bytes.len();
            }
            if keep {
                self.batch.push(value);
            }
        }
        let rows = self.batch.len() / width;
        Ok(rows >= BATCH_ROWS.min(BATCH_PLACEHOLDERS / width) || self.batch_bytes >= BATCH_BYTES)
    }

    async fn flush(&mut self, target: Option<&mut Target<'_>>) -> Result<(), BackupError> {
        if let (Some(target), Some(width)) = (target, self.width) {
            if !self.batch.is_empty() {
                target.insert(&self.name, width, std::mem::take(&mut self.batch)).await?;
            }
        }
        self.batch.clear();
        self.batch_bytes = 0;
        Ok(())
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes, without its newline; `None` at the end.
fn next_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> Result<bool, BackupError> {
    line.clear();
    let n = input.by_ref().take(MAX_LINE + 1).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if n as u64 > MAX_LINE {
        return Err(BackupError::Format("a dump record exceeds 256 MiB".into()));
    }
    Ok(true)
}

/// Reads a dump, checking its structure, every cell and the counts; writes its
/// rows into `target` when given. The caller commits the target only after
/// comparing the counts with the manifest's.
pub async fn load(
    mut input: impl BufRead,
    mut target: Option<&mut Target<'_>>,
) -> Result<Summary, BackupError> {
    let mut summary = Summary::default();
    let mut current: Option<OpenTable> = None;
    let mut line = Vec::new();
    while next_line(&mut input, &mut line)? {
        let record: Record =
            serde_json::from_slice(&line).map_err(|e| BackupError::Format(format!("dump record: {e}")))?;
        match record {
            Record::Table { name, create } => {
                if current.is_some() {
                    return Err(BackupError::Format("table started before the previous ended".into()));
                }
                let table = ident(&name)?.to_owned();
                if summary.ddl.contains_key(&table) {
                    return Err(BackupError::Format(format!("table {table} appears twice")));
                }
                if let Some(target) = target.as_deref_mut() {
                    target.begin_table(&table, &create).await?;
                }
                summary.ddl.insert(table.clone(), create);
                current =
                    Some(OpenTable { name: table, width: None, rows: 0, batch: Vec::new(), batch_bytes: 0 });
            }
            Record::Row { cells } => {
                let Some(open) = current.as_mut() else {
                    return Err(BackupError::Format("row outside a table".into()));
                };
                if open.push_row(cells, target.is_some())? {
                    open.flush(target.as_deref_mut()).await?;
                }
            }
            Record::End { name, rows } => {
                let Some(mut open) = current.take() else {
                    return Err(BackupError::Format("end outside a table".into()));
                };
                open.flush(target.as_deref_mut()).await?;
                if open.name != name || open.rows != rows {
                    return Err(BackupError::Format(format!(
                        "{name}: {} rows read, {rows} recorded",
                        open.rows
                    )));
                }
                summary.rows.insert(open.name, rows);
            }
        }
    }
    if current.is_some() {
        return Err(BackupError::Format("dump ends inside a table".into()));
    }
    Ok(summary)
}
