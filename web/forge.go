package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"builds/app"
)

// registerForgeRoutes lists the endpoint forges deliver webhooks to. It
// takes no session or token: the delivery's signature, checked with the
// repository's webhook secret, is its only credential.
func (s *Server) registerForgeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /forge/hook/{id}", s.handleForgeHook)
}

// forgeHookAnswer is the JSON a forge shows in its delivery log.
type forgeHookAnswer struct {
	Message string   `json:"message"`
	GroupID int64    `json:"group_id,omitempty"`
	Jobs    []string `json:"jobs,omitempty"` // job URLs
}

func (s *Server) handleForgeHook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, app.MaxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, forgeHookAnswer{Message: fmt.Sprintf("delivery larger than the %d bytes accepted", app.MaxWebhookBody)})
			return
		}
		writeJSON(w, http.StatusBadRequest, forgeHookAnswer{Message: "read delivery: " + err.Error()})
		return
	}
	res, err := s.Service.ReceiveWebhook(r.Context(), r.PathValue("id"), r.Header, body)
	if err != nil {
		status := httpStatus(err)
		msg := app.ErrorMessage(err)
		if status == http.StatusInternalServerError {
			s.Log.Error("forge webhook", "err", err)
			msg = "internal error"
		} else if app.ErrorCode(err) == app.EINVALID {
			status = http.StatusUnprocessableEntity
		}
		writeJSON(w, status, forgeHookAnswer{Message: msg})
		return
	}
	ans := forgeHookAnswer{Message: res.Message}
	status := http.StatusOK
	if res.Group != nil {
		status = http.StatusAccepted
		ans.GroupID = res.Group.ID
		ans.Message = "job group submitted"
		for _, j := range res.Jobs {
			owner := ""
			if u, err := s.Service.User(app.SystemContext(r.Context()), j.OwnerID); err == nil {
				owner = u.Username
			}
			ans.Jobs = append(ans.Jobs, s.Service.Config.JobURL(owner, j.ID))
		}
	}
	writeJSON(w, status, ans)
}
