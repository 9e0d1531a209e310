-- A conflicting resubmission (same application id, different content) is a rejection of the
-- resubmission, not of the application received first: it keeps the taken id in its own column,
-- so that "what happened to application X" (history) never lists it as X's fate.
ALTER TABLE intake.rejections ADD COLUMN conflicts_with text;
UPDATE intake.rejections SET conflicts_with = application_id, application_id = NULL WHERE reason = 'conflict';
CREATE INDEX rejections_conflicts_with ON intake.rejections (conflicts_with) WHERE conflicts_with IS NOT NULL;
