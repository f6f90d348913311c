//! The configuration table in `docs/configuration.md` lists exactly the
//! `PORTCULLIS_*` variables the shipped code reads (shared crate, functions,
//! CLI): none undocumented, none documented that nothing reads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `"PORTCULLIS_…"` string literal in `text`.
fn literals(text: &str, into: &mut BTreeSet<String>) {
    for (i, _) in text.match_indices("\"PORTCULLIS_") {
        let name: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        into.insert(name);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_configuration_docs_list_exactly_the_variables_the_code_reads() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("shared/src"), &mut files);
    rust_files(&root.join("cli/src"), &mut files);
    for function in std::fs::read_dir(root.join("functions")).expect("functions").flatten() {
        rust_files(&function.path().join("src"), &mut files);
    }
    let mut read = BTreeSet::new();
    for file in &files {
        literals(&std::fs::read_to_string(file).expect("source"), &mut read);
    }
    let docs = std::fs::read_to_string(root.join("docs/configuration.md")).expect("docs/configuration.md");
    let mut documented = BTreeSet::new();
    for row in docs.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row.split('|').nth(1).unwrap_or_default();
        for name in first_cell.split('`').filter(|s| s.starts_with("PORTCULLIS_")) {
            documented.insert(name.to_owned());
        }
    }
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let unread: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && unread.is_empty(),
        "undocumented: {undocumented:?}; documented but never read: {unread:?}"
    );
    assert!(read.len() > 30, "the scan found the variables ({})", read.len());
}

/// Every `PORTCULLIS_*` variable is read in one place, the configuration
/// module: no other shipped file reads the environment for one. The command
/// line's own flags (`--addr`, `--table`, `--url`) take their defaults from
/// the environment through clap, and are named in the docs too.
#[test]
fn only_the_configuration_module_reads_portcullis_variables() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("shared/src"), &mut files);
    rust_files(&root.join("cli/src"), &mut files);
    for function in std::fs::read_dir(root.join("functions")).expect("functions").flatten() {
        rust_files(&function.path().join("src"), &mut files);
    }
    let config = root.join("shared/src/config");
    let mut readers = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&config)) {
        let text = std::fs::read_to_string(file).expect("source");
        for (line, code) in text.lines().enumerate() {
            if code.contains("env::var") && code.contains("PORTCULLIS_") {
                readers.push(format!("{}:{}", file.strip_prefix(&root).unwrap_or(file).display(), line + 1));
            }
        }
    }
    assert!(readers.is_empty(), "read outside shared/src/config: {readers:?}");
}
