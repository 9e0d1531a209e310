-- Case handling: every revision of a decision, and the case handlers' findings that made them.
-- `decisions` keeps the latest revision of each application (what calls and re-decide read);
-- `decision_revisions` keeps all of them, revision 1 included.
ALTER TABLE eligibility.decisions ADD COLUMN revision int NOT NULL DEFAULT 1;
ALTER TABLE eligibility.decisions ADD COLUMN event_id text;

CREATE TABLE eligibility.decision_revisions (
    application_id text        NOT NULL REFERENCES eligibility.applications,
    revision       int         NOT NULL CHECK (revision >= 1),
    event_id       text,
    decided_by     text        NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('eligible', 'ineligible', 'needs_review')),
    decided_at     timestamptz NOT NULL,
    decision       jsonb       NOT NULL,
    PRIMARY KEY (application_id, revision)
);
INSERT INTO eligibility.decision_revisions (application_id, revision, event_id, decided_by, outcome, decided_at, decision)
SELECT application_id, 1, NULL, 'rules', outcome, decided_at, decision FROM eligibility.decisions;

-- One row per finding (idempotent by its id); `revision` is the decision revision it produced.
CREATE TABLE eligibility.findings (
    finding_id         text        PRIMARY KEY,
    application_id     text        NOT NULL REFERENCES eligibility.applications,
    criterion          text        NOT NULL,
    outcome            text        NOT NULL CHECK (outcome IN ('passed', 'failed')),
    reason             text        NOT NULL,
    document_reference text        NOT NULL,
    officer            text        NOT NULL,
    recorded_at        timestamptz NOT NULL,
    revision           int         NOT NULL
);
CREATE INDEX findings_application ON eligibility.findings (application_id, recorded_at);
