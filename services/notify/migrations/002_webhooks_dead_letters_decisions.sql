-- Issue 5: webhooks, dead letters, rendering at send time, decisions kept for grant e-mails.
-- `payload` holds the cause event (personal data): it is cleared once the message is delivered.
ALTER TABLE notify.notifications
    ADD COLUMN payload          jsonb,
    ADD COLUMN subscription_id  text,
    ADD COLUMN redeliveries     integer     NOT NULL DEFAULT 0,
    ADD COLUMN dead_at          timestamptz,
    ALTER COLUMN message DROP NOT NULL;
UPDATE notify.notifications SET status = 'dead', dead_at = now() WHERE status = 'failed';
ALTER TABLE notify.notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notify.notifications
    ADD CONSTRAINT notifications_status_check CHECK (status IN ('scheduled', 'sent', 'dead')),
    ADD CONSTRAINT notifications_webhook_has_subscription CHECK (channel <> 'webhook' OR subscription_id IS NOT NULL);
CREATE INDEX notifications_dead ON notify.notifications (dead_at) WHERE status = 'dead';

-- Eligibility decisions whose criteria a later grant e-mail explains (no personal data kept).
CREATE TABLE notify.decisions (
    application_id  text        PRIMARY KEY,
    source_event_id text        NOT NULL,
    decision        jsonb       NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
