//! Files only this user may read: the local master key, the forward-auth
//! secret, the outbox's messages. A leaf: it knows nothing of what they hold.

use std::path::Path;

/// Creates `dir` and any missing parent, each 0700 (folders that exist are
/// left as they are: whoever reads a file in them checks them).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `bytes` to the new file `path`, 0600 from its creation, synced; a
/// file already there (or a link there, even a dangling one) is an error,
/// never overwritten.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
