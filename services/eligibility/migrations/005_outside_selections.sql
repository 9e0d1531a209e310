-- Organisations a case handler recorded as selected outside the project (S3 step 1 run elsewhere):
-- `calls record-selection`, audited. One row per scheme and beneficiary.
CREATE TABLE eligibility.outside_selections (
    scheme             text        NOT NULL,
    beneficiary_id     text        NOT NULL,
    officer            text        NOT NULL,
    reason             text        NOT NULL,
    document_reference text        NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scheme, beneficiary_id)
);
