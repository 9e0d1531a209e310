-- Who submitted each application: the HTTP portal of the bearer token, or the CloudEvents source of
-- a Kafka submission. A portal reads the status of its own applications only.
ALTER TABLE intake.applications ADD COLUMN portal text;

-- The status read model: every event about an application that a portal may see, as it was
-- published (a projection of the decided, committed, refused, released and notification topics;
-- any agency can rebuild it from them). One row per event identity.
CREATE TABLE intake.status_events (
    source         text        NOT NULL,
    event_id       text        NOT NULL,
    application_id text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('decided', 'committed', 'refused', 'released', 'notified')),
    revision       int,
    at             timestamptz NOT NULL,
    body           jsonb       NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX status_events_application ON intake.status_events (application_id, at);
