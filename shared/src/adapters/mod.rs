//! Storage adapters, one folder per backend.

pub mod memory;
#[cfg(feature = "sqlite")]
pub mod sqlite;
