-- Every application intake accepted, once per application id.
CREATE TABLE intake.applications (
    application_id text        PRIMARY KEY,
    scheme         text        NOT NULL,
    channel        text        NOT NULL CHECK (channel IN ('http', 'kafka')),
    body_sha256    text        NOT NULL,
    application    jsonb       NOT NULL,
    received_at    timestamptz NOT NULL
);

-- Every refusal, so an operator can answer "what happened to my submission?".
CREATE TABLE intake.rejections (
    rejection_id     text        PRIMARY KEY,
    application_id   text,
    channel          text        NOT NULL,
    reason           text        NOT NULL,
    errors           jsonb       NOT NULL,
    source_reference text,
    rejected_at      timestamptz NOT NULL
);
CREATE INDEX rejections_application ON intake.rejections (application_id);
