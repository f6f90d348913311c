//! The common crate of Portcullis.
//!
//! Everything the Lambda functions, the local server and the tests share lives here:
//! typed configuration, the one error type and its problem+json mapping, the HTTP
//! edge (security headers, body validation), domain newtypes, the password policy,
//! cryptography (key providers, field encryption, password hashing, tokens), the
//! storage ports with their MySQL, embedded SQLite and in-memory implementations,
//! and audit events.

pub mod adapters;
pub mod apikeys;
pub mod audit;
pub mod aws;
pub mod clock;
pub mod cognito;
pub mod config;
pub mod crypto;
pub mod deferred;
pub mod device;
pub mod domain;
pub mod error;
pub mod files;
pub mod forwarded;
pub mod http;
pub mod identity;
pub mod lambda;
pub mod mail;
pub mod mfa;
pub mod pending;
pub mod policy;
pub mod rbac;
pub mod routes;
pub mod runtime;
pub mod sessions;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod throttle;
pub mod tokens;

pub use error::ApiError;
