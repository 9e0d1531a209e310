-- Applications as eligibility received them (for competitive calls and what-if replays).
CREATE TABLE eligibility.applications (
    application_id text        PRIMARY KEY,
    scheme         text        NOT NULL,
    call_id        text,
    submitted_at   timestamptz NOT NULL,
    application    jsonb       NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX applications_scheme_call ON eligibility.applications (scheme, call_id);

-- One decision per application: the primary key settles a duplicate submission.
CREATE TABLE eligibility.decisions (
    application_id    text        PRIMARY KEY REFERENCES eligibility.applications,
    scheme            text        NOT NULL,
    outcome           text        NOT NULL CHECK (outcome IN ('eligible', 'ineligible', 'needs_review')),
    parameter_version text        NOT NULL,
    decided_at        timestamptz NOT NULL,
    decision          jsonb       NOT NULL
);
CREATE INDEX decisions_scheme_outcome ON eligibility.decisions (scheme, outcome);
