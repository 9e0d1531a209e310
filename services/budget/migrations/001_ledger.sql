-- The budget ledger (schema `budget`): append-only entries are the record; pots and slices carry
-- balances updated in the same transaction as the entries that change them, and
-- `python -m services.budget.cli reconcile` proves they equal the sums of the entries.
--
-- Lock order, in every transaction that takes more than one (no deadlocks):
--   1. pg_advisory_xact_lock(application)   one decision or release per application at a time
--   2. programmes row                        FOR SHARE by commits and releases, FOR UPDATE by a reset
--   3. grants row                            FOR UPDATE by a release
--   4. pots rows                             FOR UPDATE, in pot_id order

-- A budget programme (the `programme` of a ProposedGrant) and the budget year it has open.
CREATE TABLE budget.programmes (
    programme               text    PRIMARY KEY,
    currency                text    NOT NULL CHECK (currency IN ('EUR', 'SEK', 'NOK')),
    yearly_maximum_required boolean NOT NULL DEFAULT false,
    open_year               integer,        -- NULL until the first CeilingReset; years before it are closed
    source                  text    NOT NULL
);

-- Money per fund source (unit = the currency), or a count of grants (unit = 'count').
CREATE TABLE budget.pots (
    pot_id          text    PRIMARY KEY,
    programme       text    NOT NULL REFERENCES budget.programmes,
    unit            text    NOT NULL CHECK (unit IN ('EUR', 'SEK', 'NOK', 'count')),
    fund            text,                -- money pots: the fund source (erdf, co-financing, agency, hermes)
    instruments     text[],              -- count pots: the instruments counted
    budget_year     integer,             -- NULL: the pot spans the programme's whole period
    total_minor     bigint  NOT NULL CHECK (total_minor >= 0),   -- minor units, or a count
    committed_minor bigint  NOT NULL DEFAULT 0 CHECK (committed_minor >= 0),
    released_minor  bigint  NOT NULL DEFAULT 0 CHECK (released_minor >= 0),
    source          text    NOT NULL,    -- the document or operator file the total comes from
    CHECK ((unit = 'count') = (fund IS NULL)),
    CHECK ((unit = 'count') = (instruments IS NOT NULL)),
    CHECK (released_minor <= committed_minor),
    CHECK (committed_minor - released_minor <= total_minor)      -- never below zero
);
CREATE UNIQUE INDEX pots_money_key ON budget.pots (programme, fund, unit, coalesce(budget_year, 0))
    WHERE unit <> 'count';

-- One committed grant per application.
CREATE TABLE budget.grants (
    grant_id       uuid        PRIMARY KEY,
    application_id text        NOT NULL UNIQUE,
    scheme         text        NOT NULL,
    programme      text        NOT NULL REFERENCES budget.programmes,
    instrument     text        NOT NULL,
    currency       text        NOT NULL CHECK (currency IN ('EUR', 'SEK', 'NOK')),
    conditional    boolean     NOT NULL,
    fund_shares    jsonb       NOT NULL,  -- [[fund, numerator, denominator], ...] as committed
    status         text        NOT NULL CHECK (status IN ('committed', 'withdrawn')),
    grant_json     jsonb       NOT NULL,  -- the ProposedGrant as committed
    committed_at   timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- A grant's draw on one pot for one budget year, with its current amount (commit less releases).
-- scheduled: a future year, returned by a withdrawal or reduction; open: its year is open, the
-- amount is available under that year's ceiling; closed: its year is over; released: returned.
CREATE TABLE budget.slices (
    grant_id     uuid    NOT NULL REFERENCES budget.grants,
    pot_id       text    NOT NULL REFERENCES budget.pots,
    budget_year  integer NOT NULL,
    programme    text    NOT NULL,
    unit         text    NOT NULL,
    fund         text,
    amount_minor bigint  NOT NULL CHECK (amount_minor >= 0),
    state        text    NOT NULL CHECK (state IN ('scheduled', 'open', 'closed', 'released')),
    PRIMARY KEY (grant_id, pot_id, budget_year)
);
CREATE INDEX slices_reset ON budget.slices (programme, budget_year, state);

-- The ledger. commit and release change a pot's balance; open records a slice becoming available
-- when its budget year opens (a reset), without changing the pot.
CREATE TABLE budget.entries (
    entry_id     bigserial   PRIMARY KEY,
    pot_id       text        NOT NULL REFERENCES budget.pots,
    grant_id     uuid        NOT NULL REFERENCES budget.grants,
    kind         text        NOT NULL CHECK (kind IN ('commit', 'release', 'open')),
    budget_year  integer     NOT NULL,
    amount_minor bigint      NOT NULL CHECK (amount_minor > 0),
    unit         text        NOT NULL,
    reason       text        NOT NULL,   -- committed, withdrawn, reduced, yearly_maximum, ceiling_reset
    cause        text        NOT NULL,   -- the event id or operator command that made the entry
    created_at   timestamptz NOT NULL
);
CREATE INDEX entries_pot_year ON budget.entries (pot_id, budget_year);
CREATE INDEX entries_grant ON budget.entries (grant_id);

-- Entries are never changed or removed.
CREATE FUNCTION budget.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'budget.entries is append-only';
END $$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON budget.entries
    FOR EACH ROW EXECUTE FUNCTION budget.refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON budget.entries
    FOR EACH STATEMENT EXECUTE FUNCTION budget.refuse_change();

-- Eligible grants that did not fit, with the limit and the figures.
CREATE TABLE budget.refusals (
    application_id text        PRIMARY KEY,
    limit_id       text        NOT NULL,
    message_key    text        NOT NULL,
    budget_year    integer,
    available      bigint,
    requested      bigint,
    unit           text,
    refused_at     timestamptz NOT NULL
);

-- Budget years opened per programme (one CeilingReset each), with what the reset did.
CREATE TABLE budget.budget_years (
    programme            text        NOT NULL REFERENCES budget.programmes,
    budget_year          integer     NOT NULL,
    reset_id             text        NOT NULL UNIQUE,
    yearly_maximum_minor bigint      CHECK (yearly_maximum_minor >= 0),
    opened_at            timestamptz NOT NULL,
    applied_at           timestamptz NOT NULL,
    slices_opened        integer     NOT NULL,
    slices_capped        integer     NOT NULL,
    amount_capped_minor  bigint      NOT NULL,
    PRIMARY KEY (programme, budget_year)
);

-- Year openings an operator command (or a scheduled job) asked for: one per programme and year.
CREATE TABLE budget.reset_requests (
    programme    text        NOT NULL,
    budget_year  integer     NOT NULL,
    event_id     uuid        NOT NULL UNIQUE,
    requested_at timestamptz NOT NULL,
    PRIMARY KEY (programme, budget_year)
);
