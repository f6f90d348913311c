//! Storage adapters, one folder per backend.

#[cfg(feature = "sqlite")]
pub mod sqlite;
