-- The open-data read model: a projection of the public topics (services/opendata/handlers.py).
-- Each consumed event is applied once (the inbox of 000_delivery); the tables hold only what is
-- published: the applicant organisation, never the contact person.

CREATE TABLE opendata.applications (
    application_id text        PRIMARY KEY,
    applicant      jsonb       NOT NULL,  -- ApplicationReceived.application.applicant
    title          text,
    summary        text,
    received_at    timestamptz NOT NULL
);

CREATE TABLE opendata.grants (
    grant_id       uuid        PRIMARY KEY,
    application_id text        NOT NULL,
    scheme         text        NOT NULL,
    programme      text        NOT NULL,
    grant_json     jsonb       NOT NULL,  -- GrantCommitted.grant (the ProposedGrant as committed)
    committed_at   timestamptz NOT NULL
);
CREATE INDEX grants_programme ON opendata.grants (programme);

-- Per grant and budget year: what was committed and what returned since. Additions only, so the
-- order in which a grant's commitment and its releases arrive (two topics) does not matter.
CREATE TABLE opendata.grant_years (
    grant_id        uuid    NOT NULL,
    budget_year     integer NOT NULL,
    committed_minor bigint  NOT NULL DEFAULT 0 CHECK (committed_minor >= 0),
    released_minor  bigint  NOT NULL DEFAULT 0 CHECK (released_minor >= 0),
    PRIMARY KEY (grant_id, budget_year)
);

CREATE TABLE opendata.releases (
    event_id    text        PRIMARY KEY,
    grant_id    uuid        NOT NULL,
    reason      text        NOT NULL,
    released_at timestamptz NOT NULL
);
CREATE INDEX releases_grant ON opendata.releases (grant_id);
