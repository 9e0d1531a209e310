-- Ceilings per beneficiary, and decisions followed revision by revision (issues 11 and 13).
--
-- Lock order, in every transaction that takes more than one (no deadlocks), extending 001's:
--   1. pg_advisory_xact_lock(application)    per application, in hashtext order when a batch takes several
--   2. programmes rows                        FOR SHARE by commits and releases, FOR UPDATE by a reset; programme order
--   3. grants rows                            FOR UPDATE by a release or revocation; application order
--   4. beneficiary_limits rows                FOR UPDATE (created on first use), in (limit_id, beneficiary_id, budget_year) order
--   5. pots rows                              FOR UPDATE, in pot_id order

-- The newest revision of each application's eligibility decision the budget has applied: an older
-- or equal revision (redelivered, re-emitted, or overtaken across partitions) changes nothing.
CREATE TABLE budget.decisions (
    application_id text        PRIMARY KEY,
    revision       integer     NOT NULL CHECK (revision >= 1),
    event_id       text        NOT NULL,   -- the CloudEvents id of that revision ('' before this table)
    outcome        text        NOT NULL,
    applied_at     timestamptz NOT NULL
);
INSERT INTO budget.decisions (application_id, revision, event_id, outcome, applied_at)
    SELECT application_id, 1, '', 'eligible', committed_at FROM budget.grants;
INSERT INTO budget.decisions (application_id, revision, event_id, outcome, applied_at)
    SELECT application_id, 1, '', 'eligible', refused_at FROM budget.refusals ON CONFLICT DO NOTHING;

-- A grant remembers the revision it was committed under and its beneficiary; `revoked`: an eligible
-- decision revised to ineligible before its slices were paid out.
ALTER TABLE budget.grants ADD COLUMN revision integer NOT NULL DEFAULT 1;
ALTER TABLE budget.grants ADD COLUMN beneficiary_id text;
ALTER TABLE budget.grants DROP CONSTRAINT grants_status_check;
ALTER TABLE budget.grants ADD CONSTRAINT grants_status_check CHECK (status IN ('committed', 'withdrawn', 'revoked'));

-- One refusal per application and decision revision (a later revision may be decided again).
ALTER TABLE budget.refusals ADD COLUMN revision integer NOT NULL DEFAULT 1;
ALTER TABLE budget.refusals DROP CONSTRAINT refusals_pkey;
ALTER TABLE budget.refusals ADD PRIMARY KEY (application_id, revision);

-- What one beneficiary holds of one ceiling over all its grants: per budget year (yearly money) or
-- for the whole scheme (budget_year 0: total money, number of years, number of grants). `used` is
-- materialised like a pot's balance, in the same transaction as the draws that change it; the
-- reconciliation proves it equals them. `maximum` is the value the last commitment was held to.
CREATE TABLE budget.beneficiary_limits (
    limit_id       text    NOT NULL,
    beneficiary_id text    NOT NULL,
    budget_year    integer NOT NULL,
    unit           text    NOT NULL CHECK (unit IN ('EUR', 'SEK', 'NOK', 'count', 'years')),
    maximum        bigint  CHECK (maximum >= 0),
    used           bigint  NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (limit_id, beneficiary_id, budget_year)
);

-- What each grant holds of each beneficiary row now (commit less releases): money per year, the
-- total, 1 per budget year with money (`mark_year`, rows of kind years), or 1 grant.
CREATE TABLE budget.beneficiary_draws (
    grant_id       uuid    NOT NULL REFERENCES budget.grants,
    limit_id       text    NOT NULL,
    beneficiary_id text    NOT NULL,
    budget_year    integer NOT NULL,
    mark_year      integer NOT NULL,
    kind           text    NOT NULL CHECK (kind IN ('yearly', 'total', 'years', 'grants')),
    amount         bigint  NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (grant_id, limit_id, budget_year, mark_year),
    FOREIGN KEY (limit_id, beneficiary_id, budget_year) REFERENCES budget.beneficiary_limits
);
CREATE INDEX beneficiary_draws_row ON budget.beneficiary_draws (limit_id, beneficiary_id, budget_year);
