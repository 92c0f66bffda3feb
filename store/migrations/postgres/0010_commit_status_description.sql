-- A push whose manifest fails to parse starts no job, but its forge is
-- told all the same: the PostgreSQL twin of
-- sqlite/0010_commit_status_description.sql.
ALTER TABLE commit_statuses ALTER COLUMN job_id DROP NOT NULL;
ALTER TABLE commit_statuses ADD COLUMN description TEXT NOT NULL DEFAULT '';
