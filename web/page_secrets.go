package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"builds/app"
)

// secretFormLimit bounds the whole add-secret request: the secret (pasted
// or uploaded, at most app.MaxSecretSize) plus the other fields.
const secretFormLimit = 4*app.MaxSecretSize + 16<<10

type secretsPage struct {
	page
	Secrets []*app.Secret
	Sharers map[int64]string // user id -> username, for "shared by"
	Next    string
	Error   string
	Form    secretForm // the rejected form, to fix and resend
}

// Sharer names who shared a secret with the viewer.
func (p secretsPage) Sharer(id *int64) string {
	if id == nil {
		return ""
	}
	if name := p.Sharers[*id]; name != "" {
		return "~" + name
	}
	return "a deleted user"
}

type secretForm struct {
	Name, Type, Path, Mode string
}

// handleSecrets lists the viewer's secrets with the add form.
func (u *ui) handleSecrets(w http.ResponseWriter, r *http.Request) {
	u.renderSecrets(w, r, http.StatusOK, secretsPage{Form: secretForm{Type: string(app.SecretSSHKey)}})
}

func (u *ui) renderSecrets(w http.ResponseWriter, r *http.Request, status int, p secretsPage) {
	p.page = u.newPage(w, r, "Secrets")
	var cursor *string
	if c := r.URL.Query().Get("cursor"); c != "" {
		cursor = &c
	}
	list, err := u.svc.Secrets(r.Context(), cursor)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p.Secrets, p.Sharers = list.Secrets, map[int64]string{}
	for _, s := range list.Secrets {
		if id := s.FromUserID; id != nil && p.Sharers[*id] == "" {
			if from, err := u.svc.User(r.Context(), *id); err == nil {
				p.Sharers[*id] = from.Username
			}
		}
	}
	if list.Cursor != "" {
		p.Next = "/secrets?cursor=" + urlQueryEscape(list.Cursor)
	}
	u.render(w, r, status, "secrets", p)
}

// handleSecretAdd stores a new secret. The material is never shown again.
func (u *ui) handleSecretAdd(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, secretFormLimit)
	form := secretForm{}
	fail := func(status int, msg string) {
		u.renderSecrets(w, r, status, secretsPage{Error: msg, Form: form})
	}
	if err := r.ParseMultipartForm(secretFormLimit); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("The upload is too large: secrets are limited to %d bytes (16 KiB).", app.MaxSecretSize))
			return
		}
		fail(http.StatusBadRequest, "The form could not be read.")
		return
	} else if err != nil {
		if err := r.ParseForm(); err != nil {
			fail(http.StatusBadRequest, "The form could not be read.")
			return
		}
	}
	form = secretForm{Name: strings.TrimSpace(r.FormValue("name")), Type: r.FormValue("type"),
		Path: strings.TrimSpace(r.FormValue("path")), Mode: strings.TrimSpace(r.FormValue("mode"))}
	in := app.SecretInput{Type: app.SecretType(form.Type), Name: form.Name}
	data, err := secretMaterial(r)
	if err != nil {
		fail(httpStatus(err), app.ErrorMessage(err))
		return
	}
	in.Data = data
	if in.Type == app.SecretFile {
		in.Path = form.Path
		if form.Mode == "" {
			fail(http.StatusBadRequest, "Mode is required for files: give it in octal, e.g. 600.")
			return
		}
		mode, err := strconv.ParseUint(form.Mode, 8, 32)
		if err != nil {
			fail(http.StatusBadRequest, "Must be specified in octal, e.g. 600.")
			return
		}
		in.Mode = int(mode)
	}
	sec, err := u.svc.CreateSecret(r.Context(), app.UserFromContext(r.Context()).ID, in)
	if err != nil {
		if app.ErrorCode(err) == app.EINTERNAL {
			u.fail(w, r, err)
			return
		}
		fail(httpStatus(err), app.ErrorMessage(err))
		return
	}
	u.setFlash(w, "Successfully added secret "+sec.UUID+".")
	redirect(w, r, "/secrets")
}

// secretMaterial returns the uploaded file if one was sent, else the
// pasted text.
func secretMaterial(r *http.Request) ([]byte, error) {
	if r.MultipartForm != nil {
		if fhs := r.MultipartForm.File["file"]; len(fhs) > 0 && fhs[0].Size > 0 {
			if fhs[0].Size > app.MaxSecretSize {
				return nil, app.Errorf(app.EINVALID, "The uploaded file is %d bytes; secrets are limited to %d bytes (16 KiB).", fhs[0].Size, app.MaxSecretSize)
			}
			f, err := fhs[0].Open()
			if err != nil {
				return nil, fmt.Errorf("open upload: %w", err)
			}
			defer f.Close()
			data, err := io.ReadAll(io.LimitReader(f, app.MaxSecretSize+1))
			if err != nil {
				return nil, fmt.Errorf("read upload: %w", err)
			}
			return data, nil
		}
	}
	text := r.FormValue("secret")
	if text == "" {
		return nil, app.Errorf(app.EINVALID, "Either secret text or file have to be provided.")
	}
	text = strings.ReplaceAll(text, "\r\n", "\n")
	if !strings.HasSuffix(text, "\n") && strings.HasPrefix(text, "-----BEGIN") {
		text += "\n" // keys pasted without their final newline
	}
	return []byte(text), nil
}

type secretActionPage struct {
	page
	Secret   *app.Secret
	Username string // whom to share with
	Error    string
}

// findOwnSecret finds one of the viewer's secrets for the share and
// delete forms.
func (u *ui) findOwnSecret(r *http.Request, uuid string) (*app.Secret, error) {
	var cursor *string
	for {
		list, err := u.svc.Secrets(r.Context(), cursor)
		if err != nil {
			return nil, err
		}
		for _, s := range list.Secrets {
			if s.UUID == uuid {
				return s, nil
			}
		}
		if list.Cursor == "" {
			return nil, app.Errorf(app.ENOTFOUND, "No such secret")
		}
		cursor = &list.Cursor
	}
}

func (u *ui) handleSecretShareForm(w http.ResponseWriter, r *http.Request) {
	sec, err := u.findOwnSecret(r, r.PathValue("uuid"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "secret_share", secretActionPage{page: u.newPage(w, r, "Share secret"), Secret: sec})
}

// handleSecretShare copies a secret to another user (irreversible).
func (u *ui) handleSecretShare(w http.ResponseWriter, r *http.Request) {
	if err := parseSmallForm(w, r); err != nil {
		u.fail(w, r, err)
		return
	}
	uuid, to := r.PathValue("uuid"), strings.TrimPrefix(strings.TrimSpace(r.PostForm.Get("username")), "~")
	sec, err := u.findOwnSecret(r, uuid)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if _, err := u.svc.ShareSecret(r.Context(), uuid, to); err != nil {
		if app.ErrorCode(err) == app.EINTERNAL {
			u.fail(w, r, err)
			return
		}
		p := secretActionPage{page: u.newPage(w, r, "Share secret"), Secret: sec, Username: to, Error: app.ErrorMessage(err)}
		u.render(w, r, httpStatus(err), "secret_share", p)
		return
	}
	u.setFlash(w, fmt.Sprintf("%s successfully shared with ~%s.", secretLabel(sec), to))
	redirect(w, r, "/secrets")
}

func (u *ui) handleSecretDeleteForm(w http.ResponseWriter, r *http.Request) {
	sec, err := u.findOwnSecret(r, r.PathValue("uuid"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "secret_delete", secretActionPage{page: u.newPage(w, r, "Delete secret"), Secret: sec})
}

// handleSecretDelete removes one of the viewer's secrets.
func (u *ui) handleSecretDelete(w http.ResponseWriter, r *http.Request) {
	if err := parseSmallForm(w, r); err != nil {
		u.fail(w, r, err)
		return
	}
	sec, err := u.svc.DeleteSecret(r.Context(), r.PostForm.Get("uuid"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	msg := "Successfully removed secret " + sec.UUID
	if sec.Name != nil {
		msg += " (" + *sec.Name + ")"
	}
	u.setFlash(w, msg+".")
	redirect(w, r, "/secrets")
}

// secretLabel names a secret in messages: its name, else its UUID.
func secretLabel(s *app.Secret) string {
	if s.Name != nil && *s.Name != "" {
		return *s.Name
	}
	return s.UUID
}
