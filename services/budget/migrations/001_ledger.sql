-- The budget ledger: append-only entries; pots carry a balance updated in the same transaction
-- as the entries that change it (reconciliation proves they agree).
CREATE TABLE budget.pots (
    pot_id          text    PRIMARY KEY,
    programme       text    NOT NULL,
    fund            text    NOT NULL,
    currency        text    NOT NULL CHECK (currency IN ('EUR', 'SEK', 'NOK')),
    budget_year     integer,             -- NULL: the pot spans the programme's whole period
    total_minor     bigint  NOT NULL CHECK (total_minor >= 0),
    committed_minor bigint  NOT NULL DEFAULT 0 CHECK (committed_minor >= 0),
    released_minor  bigint  NOT NULL DEFAULT 0 CHECK (released_minor >= 0),
    source          text    NOT NULL,    -- the document or operator file the total comes from
    CHECK (committed_minor - released_minor <= total_minor),
    CHECK (released_minor <= committed_minor)
);
CREATE UNIQUE INDEX pots_programme_fund_year ON budget.pots (programme, fund, coalesce(budget_year, 0));

CREATE TABLE budget.entries (
    entry_id       bigserial   PRIMARY KEY,
    pot_id         text        NOT NULL REFERENCES budget.pots,
    application_id text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('commit', 'release')),
    budget_year    integer     NOT NULL,
    amount_minor   bigint      NOT NULL CHECK (amount_minor > 0),
    currency       text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entries_pot ON budget.entries (pot_id);
CREATE INDEX entries_application ON budget.entries (application_id);

-- Entries are never changed or removed.
CREATE FUNCTION budget.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'budget.entries is append-only';
END $$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON budget.entries
    FOR EACH ROW EXECUTE FUNCTION budget.refuse_change();

-- One outcome per application: committed or refused.
CREATE TABLE budget.grants (
    application_id text        PRIMARY KEY,
    grant_id       uuid        NOT NULL UNIQUE,
    programme      text        NOT NULL,
    currency       text        NOT NULL,
    grant_json     jsonb       NOT NULL,
    committed_at   timestamptz NOT NULL
);
CREATE TABLE budget.refusals (
    application_id text        PRIMARY KEY,
    limit_id       text        NOT NULL,
    message_key    text        NOT NULL,
    refused_at     timestamptz NOT NULL
);
