//! Integration tests against real MariaDB and the moto AWS emulator, started by
//! `scripts/test.sh`. One binary; every test makes its own database.

mod admin_mysql;
mod api_key_bounds;
mod app;
mod attacks;
mod audit_search;
mod backup;
mod cognito;
mod cognito_direct;
mod config_docs;
mod database_secret;
mod database_tls;
mod device_cookie;
mod embedded_restart;
mod every_backend;
mod example_notes;
mod forward_auth;
mod helpers;
mod iac;
mod key_revocation;
mod kms;
mod lambda_runtime;
mod least_privilege;
mod local_server;
mod login_mysql;
mod mfa;
mod password_breach;
mod policy_cli;
mod providers;
mod roles_race;
mod sessions;
mod sql_check;
mod step_up;
mod store_contract;
mod team_policy;
mod throttle;
