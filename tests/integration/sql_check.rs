//! OWASP A03: SQL is never assembled from strings. This check reads every Rust
//! source file of the workspace and fails on `format!`, `concat!`, `push_str` or
//! `+` used to build text that contains SQL. The only exception is a line right
//! after a `sql-splice-reviewed:` comment that says why (identifiers, which SQL
//! cannot bind as parameters).

use std::path::{Path, PathBuf};

const SQL_WORDS: [&str; 12] = [
    "SELECT ", "INSERT ", "UPDATE ", "DELETE ", "REPLACE ", "GRANT ", "CREATE ", "ALTER ", "DROP ",
    " WHERE ", " FROM ", "EXECUTE ",
];
const BUILDERS: [&str; 7] = ["format!(", "concat!(", "push_str(", "\" +", "+ \"", "+ &", "write!("];
const REVIEWED: &str = "sql-splice-reviewed:";

/// `(line number, line)` of every place that builds SQL text from pieces.
pub fn sql_splices(source: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !BUILDERS.iter().any(|b| line.contains(b)) {
            continue;
        }
        // A builder whose text continues on the next lines (multi-line format!).
        let window = lines[i..lines.len().min(i + 3)].join(" ");
        let has_sql = SQL_WORDS.iter().any(|w| window.contains(w));
        let reviewed = i > 0 && lines[i - 1].contains(REVIEWED);
        if has_sql && !reviewed {
            found.push((i + 1, line.trim().to_owned()));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with("target") {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_sql_is_assembled_from_strings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
    let mut files = Vec::new();
    for dir in ["shared", "functions", "cli", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} Rust files under {}", files.len(), root.display());
    let this_file = Path::new(file!()).file_name().expect("name");
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| f.file_name() != Some(this_file)) {
        let text = std::fs::read_to_string(file).expect("readable source");
        for (line, code) in sql_splices(&text) {
            offenders.push(format!("{}:{line}: {code}", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "SQL built from strings (bind parameters instead):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_check_catches_formatted_and_concatenated_sql() {
    let select = ["SEL", "ECT "].concat();
    let samples = [
        format!("let q = format!(\"{select}* FROM users WHERE id = {{id}}\");"),
        format!("let q = \"{select}* FROM users WHERE email = '\" + email;"),
        format!("q.push_str(\"{select}id FROM users\");"),
        format!("let q = format!(\n  \"{select}* FROM t WHERE a = {{}}\",\n a);"),
    ];
    for sample in &samples {
        assert_eq!(sql_splices(sample).len(), 1, "missed: {sample}");
    }
    let fine = format!("conn.exec_first(\"{select}id FROM users WHERE id = ?\", (id,))");
    assert!(sql_splices(&fine).is_empty());
    let reviewed = format!("// {REVIEWED} identifier\nlet q = format!(\"CREATE DATABASE {{}}\", name);");
    assert!(sql_splices(&reviewed).is_empty());
}
