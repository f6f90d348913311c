-- A compromised token-signing key is revoked (`portcullis keys revoke`): from
-- then on it is left out of the JWKS, verifiers refuse its tokens and signers
-- never use it. The row stays, so the revocation is kept (and backed up) and
-- the kid can never be inserted again (it is unique).
ALTER TABLE key_material ADD COLUMN revoked_at DATETIME(6) NULL AFTER created_at;
