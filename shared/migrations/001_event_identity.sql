-- An event's identity is its (source, id), as CloudEvents defines it: two portals may both send id 42.
-- Claims made before this migration keep source '' and still count as claims of their id (claim_all).
ALTER TABLE {schema}.inbox ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT '';
ALTER TABLE {schema}.inbox DROP CONSTRAINT IF EXISTS inbox_pkey;
ALTER TABLE {schema}.inbox ADD PRIMARY KEY (consumer, source, event_id);

-- Dead-letter copies go through the outbox too (parked exactly once, in the claim's transaction):
-- their key and headers are kept byte for byte in `raw`, and a copy of a tombstone has no payload.
ALTER TABLE {schema}.outbox ALTER COLUMN key DROP NOT NULL;
ALTER TABLE {schema}.outbox ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE {schema}.outbox ADD COLUMN IF NOT EXISTS raw bytea;

-- Rows Kafka refuses for good (larger than the broker accepts), set aside instead of blocking the relay.
CREATE TABLE IF NOT EXISTS {schema}.outbox_failed (
    id         bigint      PRIMARY KEY,
    event_id   uuid        NOT NULL,
    topic      text        NOT NULL,
    key        text,
    headers    jsonb       NOT NULL,
    payload    bytea,
    raw        bytea,
    error      text        NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);

-- Records this service parked, by identity: an operator's redrive re-reads the parked copy from the
-- dead-letter topic and processes it here (nobody republishes into a topic they do not own).
CREATE TABLE IF NOT EXISTS {schema}.parked (
    consumer    text        NOT NULL,
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   int         NOT NULL,
    "offset"    bigint      NOT NULL,
    reason      text        NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    redriven_at timestamptz,
    PRIMARY KEY (consumer, source, event_id)
);

CREATE TABLE IF NOT EXISTS {schema}.redrive_requests (
    id            bigserial   PRIMARY KEY,
    dlt_partition int         NOT NULL,
    dlt_offset    bigint      NOT NULL,
    requested_by  text        NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz,
    outcome       text,
    UNIQUE (dlt_partition, dlt_offset)
);
