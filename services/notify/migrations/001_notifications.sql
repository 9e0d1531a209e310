-- Every message notify owes, scheduled in the same transaction as the inbox claim of its cause.
-- dedupe_key = cause event id + channel + recipient: a redelivered event schedules nothing twice.
CREATE TABLE notify.notifications (
    notification_id   uuid        PRIMARY KEY,
    dedupe_key        text        NOT NULL UNIQUE,
    source_event_id   text        NOT NULL,
    source_event_type text        NOT NULL,
    application_id    text,
    channel           text        NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient_ref     text        NOT NULL,
    template          text        NOT NULL,
    language          text        NOT NULL,
    message           jsonb       NOT NULL,   -- what to send (holds the address: never logged)
    status            text        NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'sent', 'failed')),
    attempts          integer     NOT NULL DEFAULT 0,
    last_error        text,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    scheduled_at      timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz
);
CREATE INDEX notifications_due ON notify.notifications (next_attempt_at) WHERE status = 'scheduled';
CREATE INDEX notifications_application ON notify.notifications (application_id);
