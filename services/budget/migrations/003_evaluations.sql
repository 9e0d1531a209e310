-- Norway's annual evaluation (issue 13 item 6): a cluster that does not continue keeps what was paid
-- for the year evaluated and earlier; its later slices return. One row per evaluation applied, so the
-- same evaluation published again (under another event id) changes nothing.
CREATE TABLE budget.evaluations (
    evaluation_id  text        PRIMARY KEY,   -- '<application_id>/<year>'
    application_id text        NOT NULL,
    year           integer     NOT NULL,
    continues      boolean     NOT NULL,
    event_id       text        NOT NULL,
    applied_at     timestamptz NOT NULL
);
