//! OWASP A03: SQL is never assembled from strings. This check reads every Rust
//! source file of the workspace and fails on `format!`, `concat!`, `push_str`,
//! `+`, `write!`, `.join(` or `.concat()` used to build text that contains SQL,
//! in any letter case. The only exception is a line right after a
//! `sql-splice-reviewed:` comment that says why (identifiers, which SQL cannot
//! bind as parameters).
//!
//! SQL is recognised by the shape of a statement or clause (`select … from`,
//! `insert into`, `update … set`, `delete from`, `create table`, `where id =`,
//! `order by` …) over case-folded words, not by single keywords, so English
//! text ("could not update the counter") does not trip it.

use std::path::{Path, PathBuf};

const BUILDERS: [&str; 13] = [
    "format!(",
    "format_args!(",
    "concat!(",
    "push_str(",
    "\" +",
    "+ \"",
    "+ &",
    "+= \"",
    "+= &",
    "write!(",
    "writeln!(",
    ".join(",
    ".concat()",
];
const REVIEWED: &str = "sql-splice-reviewed:";
/// Lines a builder's statement may span (a multi-line `format!`).
const CONTINUATION: usize = 8;

/// Case-folded words (`[a-z0-9_]` runs) and each other visible character
/// alone, but for quotes, commas, `#` and backslashes: a statement split over
/// literals (`"delete", "from"`) or escaped newlines (`"select *\nfrom"`) reads
/// as one.
fn words(text: &str) -> Vec<String> {
    let text = text.replace("\\n", " ").replace("\\r", " ").replace("\\t", " ");
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c.to_ascii_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() && !matches!(c, '"' | '\'' | ',' | '#' | '\\' | '`') {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

const OBJECTS: &[&str] = &[
    "table",
    "tables",
    "database",
    "schema",
    "user",
    "role",
    "index",
    "view",
    "procedure",
    "function",
    "trigger",
];

/// Statement and clause shapes: a first word, and the words one of which must
/// follow it within so many words.
const SHAPES: [(&str, &[&str], usize); 18] = [
    ("select", &["from"], 40),
    ("insert", &["into"], 3),
    ("replace", &["into"], 3),
    ("update", &["set"], 30),
    ("delete", &["from"], 3),
    ("truncate", &["table"], 1),
    ("union", &["select"], 2),
    ("execute", &["using"], 4),
    ("create", OBJECTS, 3),
    ("alter", OBJECTS, 3),
    ("drop", OBJECTS, 3),
    ("rename", OBJECTS, 1),
    ("show", &["tables", "databases", "grants", "create", "columns"], 1),
    ("grant", &["on", "to"], 12),
    ("revoke", &["on", "from"], 12),
    ("order", &["by"], 1),
    ("group", &["by"], 1),
    ("values", &["("], 1),
];

/// Whether a word sequence holds an SQL statement or clause: one of
/// [`SHAPES`], a `where` comparing a column (`where id =`, `where a like`,
/// `where b in (`, `where c is null`), or `set default role` / `set password`.
fn has_sql(w: &[String]) -> bool {
    let at = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
    let is_name = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (0..w.len()).any(|i| {
        let shape = SHAPES.iter().any(|(first, then, within)| {
            w[i] == *first && w[i + 1..w.len().min(i + 1 + within)].iter().any(|x| then.contains(&x.as_str()))
        });
        let compare = matches!(at(i + 2), "=" | "<" | ">" | "!" | "like" | "between" | "regexp")
            || (at(i + 2) == "in" && at(i + 3) == "(")
            || (at(i + 2) == "is" && (at(i + 3) == "null" || at(i + 3) == "not" && at(i + 4) == "null"));
        let clause = w[i] == "where" && is_name(at(i + 1)) && compare;
        let session =
            w[i] == "set" && (at(i + 1) == "password" || at(i + 1) == "default" && at(i + 2) == "role");
        shape || clause || session
    })
}

/// `(line number, line)` of every place that builds SQL text from pieces.
pub fn sql_splices(source: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !BUILDERS.iter().any(|b| line.contains(b)) {
            continue;
        }
        // The builder's expression, up to the line that ends its statement.
        let end = (i..lines.len().min(i + CONTINUATION))
            .find(|&j| lines[j].trim_end().ends_with(';'))
            .unwrap_or(lines.len().min(i + CONTINUATION) - 1);
        let window = lines[i..=end].join(" ");
        let reviewed = i > 0 && lines[i - 1].contains(REVIEWED);
        if has_sql(&words(&window)) && !reviewed {
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
fn the_check_catches_formatted_and_concatenated_sql_in_any_case() {
    // sql-splice-reviewed: these are samples the checker must flag, never executed SQL.
    let splices = [
        r#"let q = format!("SELECT * FROM users WHERE id = {id}");"#,
        r#"let q = format!("select * from users where id = {id}");"#,
        r#"let q = format!("SeLeCt id FrOm users");"#,
        r#"let q = "select * from users where email = '" + email;"#,
        r#"let q = "delete from sessions where sid = '".to_owned() + &sid + "'";"#,
        r#"q.push_str("select id from users");"#,
        r#"q.push_str(&format!(" where email = '{email}'"));"#,
        r#"q += " order by created_at";"#,
        r#"q += &format!(" order by {column}");"#,
        r#"write!(q, "update users set email = '{}' where id = 1", email)?;"#,
        r#"let q = ["insert into audit_log (event_type) values ('", kind, "')"].concat();"#,
        r#"let q = ["delete", "from", "users"].join(" ");"#,
        r#"let q = concat!("replace into t ", "values (1)");"#,
        r#"let q = format!("drop table if exists {t}");"#,
        r#"let q = format!("create user {name} identified by '{pw}'");"#,
        r#"let q = format!("grant select on db.* to {user}");"#,
        r#"let q = format!("set default role {role} for {user}");"#,
        r#"let q = format!("id in ({}) union select password from users", ids);"#,
        r#"let q = format!("where deleted_at is null and id = {id}");"#,
        r#"let q = format!("where id in ({ids})");"#,
        "let q = format!(\n    \"select *\n     from t where a = {}\",\n    a,\n);",
        "let q = format!(\n    r#\"\n    SELECT a,\n           b\n    FROM t WHERE id = {id}\n    \"#\n);",
    ];
    for sample in splices {
        assert_eq!(sql_splices(sample).len(), 1, "missed: {sample}");
    }
    // Bound parameters, English text and Rust that merely shares a word: not SQL splicing.
    let fine = [
        r#"conn.exec_first("select id from users where id = ?", (id,)).await?;"#,
        r#"let msg = format!("could not update the counter for {key}");"#,
        r#"let msg = format!("delete the file {path} from disk? select one");"#,
        r#"tracing::warn!("{}", format!("grant failed"));"#,
        r#"let table = format!("pct-sessions-{}", hex_token());"#,
        r#"let e = format!("order {n} of {total}, where {place} is");"#,
        r#"let e = format!("a role where users in {group} may read");"#,
        r#"fn f<T>(x: T) -> String where T: Display { format!("{x}") }"#,
        r#".update_expression(format!("SET failures = failures + :one"))"#,
        "let rows = [\"(?)\"; 3].join(\", \");\n// note\nlet s = \"create table on moto\";",
    ];
    for sample in fine {
        assert!(sql_splices(sample).is_empty(), "flagged: {sample}");
    }
    let reviewed = format!("// {REVIEWED} identifier\nlet q = format!(\"create database {{}}\", name);");
    assert!(sql_splices(&reviewed).is_empty());
    // The exception covers one line, not the file after it.
    let after = format!("{reviewed}\nlet r = format!(\"select * from t where a = {{a}}\");");
    assert_eq!(sql_splices(&after).len(), 1, "{after}");
}
