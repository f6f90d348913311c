-- Portcullis identity schema, version 1. Applied by `portcullis db migrate` (or the
-- test harness) as the schema owner; functions connect as their own least-privilege
-- users (see ../roles.sql). Table names are unqualified: run inside the database.

-- Users. The email is stored encrypted (AES-256-GCM, bound to the user id) and
-- looked up through a keyed blind index (HMAC-SHA256 of the normalized address).
CREATE TABLE users (
    id BINARY(16) NOT NULL PRIMARY KEY,
    email_index BINARY(32) NOT NULL,
    email_ciphertext VARBINARY(512) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    mfa_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY users_email_index (email_index)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE roles (
    name VARCHAR(32) NOT NULL PRIMARY KEY,
    description VARCHAR(255) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT INTO roles (name, description) VALUES
    ('user', 'A registered person: own profile, sessions and MFA'),
    ('support', 'Reads users and revokes sessions'),
    ('admin', 'Manages users, roles, sessions and API keys'),
    ('auditor', 'Reads the audit trail');

CREATE TABLE user_roles (
    user_id BINARY(16) NOT NULL,
    role VARCHAR(32) NOT NULL,
    granted_at DATETIME(6) NOT NULL,
    PRIMARY KEY (user_id, role),
    CONSTRAINT user_roles_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT user_roles_role FOREIGN KEY (role) REFERENCES roles (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Append-only: application users get INSERT only (no UPDATE, no DELETE).
CREATE TABLE audit_log (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    occurred_at DATETIME(6) NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    subject VARCHAR(64) NULL,
    source_ip VARCHAR(45) NULL,
    user_agent VARCHAR(512) NULL,
    request_id VARCHAR(128) NULL,
    reason VARCHAR(64) NULL,
    KEY audit_log_type_time (event_type, occurred_at),
    KEY audit_log_subject (subject, occurred_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Wrapped key material: data keys wrapped by KMS (or the local master key) and
-- private keys sealed under them. Public halves are readable by the authorizer.
CREATE TABLE key_material (
    purpose VARCHAR(32) NOT NULL,
    generation INT UNSIGNED NOT NULL,
    kid VARCHAR(64) NOT NULL,
    public_key VARBINARY(256) NOT NULL,
    wrapped_key VARBINARY(1024) NOT NULL,
    sealed VARBINARY(4096) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (purpose, generation),
    UNIQUE KEY key_material_kid (kid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
