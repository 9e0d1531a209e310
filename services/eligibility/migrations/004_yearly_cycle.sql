-- Calls opened (Norway's yearly call per level) and annual evaluations of funded clusters:
-- each once (the primary key), the published event kept as it was published.
CREATE TABLE eligibility.calls_opened (
    call_id   text        PRIMARY KEY,
    scheme    text        NOT NULL,
    year      int         NOT NULL,
    opened_at timestamptz NOT NULL,
    event     jsonb       NOT NULL
);

CREATE TABLE eligibility.evaluations (
    evaluation_id  text        PRIMARY KEY,
    application_id text        NOT NULL REFERENCES eligibility.applications,
    year           int         NOT NULL,
    continues      boolean     NOT NULL,
    evaluated_at   timestamptz NOT NULL,
    event          jsonb       NOT NULL
);
