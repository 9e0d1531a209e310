-- Inbox and outbox of one service schema ({schema} is the service's schema name).
CREATE SCHEMA IF NOT EXISTS {schema};

-- Every consumed event id, claimed in the same transaction as its state change.
-- The primary key makes processing an event twice impossible.
CREATE TABLE IF NOT EXISTS {schema}.inbox (
    consumer    text        NOT NULL,
    event_id    text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Events written in the same transaction as the state change that caused them;
-- the outbox relay publishes them in id order and deletes what the broker acknowledged.
CREATE TABLE IF NOT EXISTS {schema}.outbox (
    id         bigserial   PRIMARY KEY,
    event_id   uuid        NOT NULL UNIQUE,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    headers    jsonb       NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
