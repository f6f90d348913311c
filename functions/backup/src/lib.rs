//! The `backup` function. Its issue has not landed: an invocation fails loudly
//! instead of pretending a backup was taken.

/// Always an error until encrypted backups are implemented.
pub async fn run() -> Result<(), &'static str> {
    Err("backup is not implemented yet")
}
