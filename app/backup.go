package app

import "time"

// BackupIndex is what a database snapshot taken by `builds backup` names
// on disk: the backup copies the files of these jobs and artifacts and no
// others (backup/backup.go has the rule).
type BackupIndex struct {
	Jobs      []BackupJob
	Artifacts []BackupArtifact // those not pruned
}

// BackupJob is one job of a snapshot. Settled says nothing writes its
// logs any more: it was final for longer than a kept VM can live.
type BackupJob struct {
	ID      int64
	Settled bool
}

// BackupArtifact is one stored artifact of a snapshot; File is its path
// under <data-dir>/artifacts (Artifact.File).
type BackupArtifact struct {
	ID, JobID int64
	File      string
}

// BackupSettleTime is how long after a job finished its logs may still
// grow: a failed job's VM is kept [runner] failed-keepalive for
// `connect`, and a connection extends that to the job's deadline.
func (c *Config) BackupSettleTime() time.Duration {
	return c.Runner.JobTimeout + c.Runner.FailedKeepalive + time.Minute
}
