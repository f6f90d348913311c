-- Administrative audit events name who acted (actor) on whom (subject) and what
-- changed (detail: a role name, an API key id). Application users still INSERT only.
ALTER TABLE audit_log ADD COLUMN actor VARCHAR(128) NULL AFTER subject;
ALTER TABLE audit_log ADD COLUMN detail VARCHAR(255) NULL AFTER reason;
