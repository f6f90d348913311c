-- Portcullis least-privilege roles and users (MariaDB 10.11 syntax; MySQL 8 notes below).
--
-- One role per function plus backup-reader and auditor; one database user per
-- function, granted only its role. The audit trail is insert-only for every
-- application user: nobody but the schema owner can UPDATE or DELETE it.
--
-- Apply as an administrator after the migrations, then give each user a password
-- out of band (or IAM authentication on RDS), never in this file:
--   mariadb portcullis < infra/mysql/roles.sql
--   ALTER USER 'portcullis_login'@'%' IDENTIFIED BY '<from your secret store>';
-- On RDS/Aurora add REQUIRE SSL to each user (see docs/deploying.md, "TLS").
--
-- The schema name `portcullis` prefixes every role and user. The test harness
-- applies this file to a throw-away database by renaming that prefix (an
-- identifier, validated as [a-z0-9_]); no value is ever spliced into SQL.
--
-- MySQL 8 differences:
--   * `SET DEFAULT ROLE portcullis_login FOR 'portcullis_login'@'%'` is written
--     `SET DEFAULT ROLE portcullis_login TO 'portcullis_login'@'%'`;
--   * roles are granted as `GRANT portcullis_login TO 'portcullis_login'@'%'` (same),
--     and column-level grants work the same way;
--   * set `activate_all_roles_on_login = ON` or keep the SET DEFAULT ROLE lines.

CREATE ROLE IF NOT EXISTS portcullis_login;
GRANT SELECT, INSERT ON portcullis.users TO portcullis_login;
GRANT UPDATE (password_hash, updated_at) ON portcullis.users TO portcullis_login;
-- Re-authentication checks the TOTP code itself and records its step (a code is accepted once).
GRANT UPDATE (totp_last_step) ON portcullis.users TO portcullis_login;
GRANT SELECT ON portcullis.roles TO portcullis_login;
GRANT SELECT, INSERT ON portcullis.user_roles TO portcullis_login;
GRANT INSERT ON portcullis.audit_log TO portcullis_login;
GRANT SELECT, INSERT ON portcullis.key_material TO portcullis_login;

CREATE ROLE IF NOT EXISTS portcullis_mfa;
GRANT SELECT (id, email_ciphertext, mfa_enabled, created_at, totp_secret_ciphertext, totp_pending_ciphertext, totp_last_step)
    ON portcullis.users TO portcullis_mfa;
GRANT UPDATE (mfa_enabled, updated_at, totp_secret_ciphertext, totp_pending_ciphertext, totp_last_step)
    ON portcullis.users TO portcullis_mfa;
GRANT SELECT, INSERT, UPDATE, DELETE ON portcullis.recovery_codes TO portcullis_mfa;
GRANT SELECT ON portcullis.user_roles TO portcullis_mfa;
GRANT INSERT ON portcullis.audit_log TO portcullis_mfa;
GRANT SELECT ON portcullis.key_material TO portcullis_mfa;

CREATE ROLE IF NOT EXISTS portcullis_refresh;
GRANT SELECT (id, mfa_enabled, created_at) ON portcullis.users TO portcullis_refresh;
GRANT SELECT ON portcullis.user_roles TO portcullis_refresh;
GRANT INSERT ON portcullis.audit_log TO portcullis_refresh;
GRANT SELECT ON portcullis.key_material TO portcullis_refresh;

-- The authorizer reads public verification keys and whether they are revoked:
-- never wrapped or sealed material. No function may revoke a key or undo a
-- revocation (UPDATE): `portcullis keys revoke` runs as the schema owner.
CREATE ROLE IF NOT EXISTS portcullis_authorizer;
GRANT SELECT (purpose, generation, kid, public_key, created_at, revoked_at) ON portcullis.key_material TO portcullis_authorizer;

CREATE ROLE IF NOT EXISTS portcullis_admin;
GRANT SELECT (id, email_ciphertext, mfa_enabled, created_at) ON portcullis.users TO portcullis_admin;
GRANT SELECT ON portcullis.roles TO portcullis_admin;
GRANT SELECT, INSERT, DELETE ON portcullis.user_roles TO portcullis_admin;
GRANT INSERT ON portcullis.audit_log TO portcullis_admin;
-- GET /admin/audit: the trail is searched for employees holding audit:read (still no UPDATE or DELETE).
GRANT SELECT ON portcullis.audit_log TO portcullis_admin;
GRANT SELECT ON portcullis.key_material TO portcullis_admin;

-- Read-only, for consistent snapshots (START TRANSACTION WITH CONSISTENT SNAPSHOT).
CREATE ROLE IF NOT EXISTS portcullis_backup_reader;
GRANT SELECT, SHOW VIEW ON portcullis.* TO portcullis_backup_reader;

CREATE ROLE IF NOT EXISTS portcullis_auditor;
GRANT SELECT ON portcullis.audit_log TO portcullis_auditor;

CREATE USER IF NOT EXISTS 'portcullis_login'@'%' ACCOUNT LOCK;
CREATE USER IF NOT EXISTS 'portcullis_mfa'@'%' ACCOUNT LOCK;
CREATE USER IF NOT EXISTS 'portcullis_refresh'@'%' ACCOUNT LOCK;
CREATE USER IF NOT EXISTS 'portcullis_authorizer'@'%' ACCOUNT LOCK;
CREATE USER IF NOT EXISTS 'portcullis_admin'@'%' ACCOUNT LOCK;
CREATE USER IF NOT EXISTS 'portcullis_backup'@'%' ACCOUNT LOCK;
CREATE USER IF NOT EXISTS 'portcullis_auditor'@'%' ACCOUNT LOCK;

GRANT portcullis_login TO 'portcullis_login'@'%';
GRANT portcullis_mfa TO 'portcullis_mfa'@'%';
GRANT portcullis_refresh TO 'portcullis_refresh'@'%';
GRANT portcullis_authorizer TO 'portcullis_authorizer'@'%';
GRANT portcullis_admin TO 'portcullis_admin'@'%';
GRANT portcullis_backup_reader TO 'portcullis_backup'@'%';
GRANT portcullis_auditor TO 'portcullis_auditor'@'%';

SET DEFAULT ROLE portcullis_login FOR 'portcullis_login'@'%';
SET DEFAULT ROLE portcullis_mfa FOR 'portcullis_mfa'@'%';
SET DEFAULT ROLE portcullis_refresh FOR 'portcullis_refresh'@'%';
SET DEFAULT ROLE portcullis_authorizer FOR 'portcullis_authorizer'@'%';
SET DEFAULT ROLE portcullis_admin FOR 'portcullis_admin'@'%';
SET DEFAULT ROLE portcullis_backup_reader FOR 'portcullis_backup'@'%';
SET DEFAULT ROLE portcullis_auditor FOR 'portcullis_auditor'@'%';
