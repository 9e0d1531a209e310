-- Whom to tell when a committed grant later changes (withdrawn, reduced, capped): a GrantReleased
-- carries no contact, so notify keeps the recipient of the grant's GrantCommitted. Personal data,
-- kept only while the grant can still change: the CeilingReset of the programme's year after the
-- grant's last budget year deletes it.
CREATE TABLE notify.grant_recipients (
    grant_id         text        PRIMARY KEY,
    application_id   text        NOT NULL,
    programme        text        NOT NULL,
    last_budget_year integer     NOT NULL,
    recipient        jsonb       NOT NULL,
    stored_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grant_recipients_expiry ON notify.grant_recipients (programme, last_budget_year);
