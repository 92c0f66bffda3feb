package app

import "context"

// TriggerDeliveries lists the recorded trigger delivery attempts (manifest
// and group triggers) of a job, oldest first. Only the job's owner sees
// them; everybody else gets an empty list, as trigger targets (email
// addresses, webhook URLs) are private.
func (s *Service) TriggerDeliveries(ctx context.Context, job *Job) ([]*TriggerDelivery, error) {
	if !isOwner(ctx, job) {
		return []*TriggerDelivery{}, nil
	}
	return s.Store.FindTriggerDeliveries(ctx, job.ID)
}
