-- TOTP state per user (secrets AES-256-GCM encrypted, bound to the user id; the
-- last accepted time step refuses replays) and single-use recovery codes (SHA-256).
ALTER TABLE users ADD COLUMN totp_secret_ciphertext VARBINARY(256) NULL AFTER mfa_enabled;
ALTER TABLE users ADD COLUMN totp_pending_ciphertext VARBINARY(256) NULL AFTER totp_secret_ciphertext;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NULL AFTER totp_pending_ciphertext;

CREATE TABLE recovery_codes (
    user_id BINARY(16) NOT NULL,
    code_hash BINARY(32) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    used_at DATETIME(6) NULL,
    PRIMARY KEY (user_id, code_hash),
    CONSTRAINT recovery_codes_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
