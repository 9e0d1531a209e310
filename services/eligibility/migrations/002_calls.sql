-- Assessors' scores for competitive calls, one row per assessment (idempotent by its id).
CREATE TABLE eligibility.assessments (
    assessment_id  text        PRIMARY KEY,
    application_id text        NOT NULL,
    call_id        text        NOT NULL,
    assessor_id    text        NOT NULL,
    scores         jsonb       NOT NULL,
    submitted_at   timestamptz NOT NULL,
    UNIQUE (application_id, assessor_id)
);
CREATE INDEX assessments_call ON eligibility.assessments (call_id);

-- A call is closed once; closing it again returns the same result.
CREATE TABLE eligibility.calls (
    call_id   text        PRIMARY KEY,
    scheme    text        NOT NULL,
    closed_at timestamptz NOT NULL,
    result    jsonb       NOT NULL
);
