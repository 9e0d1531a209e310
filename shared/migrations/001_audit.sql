-- The audit trail of operator commands that change this service's state ({schema} is the service's
-- schema name). A command writes its row in the same transaction as its effect and as the
-- AuditRecorded event in the outbox (shared/audit.py), so the trail can never miss a change or
-- record one that did not happen. Rows are never changed or removed.
CREATE TABLE {schema}.audit (
    audit_id    uuid        PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now(),  -- the transaction's time on the database's clock
    operator    text        NOT NULL CHECK (length(operator) BETWEEN 1 AND 128),
    command     text        NOT NULL,                -- e.g. 'budget open-year'
    arguments   jsonb       NOT NULL,                -- the arguments and options as given
    outcome     text        NOT NULL,                -- e.g. 'requested', 'released', 'unchanged'
    changes     jsonb       NOT NULL,                -- what changed (money: integer minor units and currency)
    event_id    uuid        NOT NULL UNIQUE          -- the CloudEvents id of its AuditRecorded
);
CREATE INDEX audit_recorded_at ON {schema}.audit (recorded_at);

CREATE FUNCTION {schema}.audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.audit is append-only', TG_TABLE_SCHEMA;
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON {schema}.audit
    FOR EACH ROW EXECUTE FUNCTION {schema}.audit_refuse_change();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON {schema}.audit
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_refuse_change();
