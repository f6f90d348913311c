//! Storage adapters, one folder per backend.

pub mod dynamo;
pub mod memory;
pub mod mysql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
