//! In-process adapters of every storage port, for unit tests and handler tests
//! that run without services. Each keeps the atomicity its port promises with
//! one mutex around each operation.

mod apikeys;
mod challenges;
mod counters;
mod pending;
mod sessions;
mod store;

pub use apikeys::MemoryApiKeyStore;
pub use challenges::MemoryChallengeStore;
pub use counters::MemoryCounterStore;
pub use pending::MemoryPendingStore;
pub use sessions::MemorySessionStore;
pub use store::MemoryStore;
