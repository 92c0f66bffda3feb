package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"builds/app"
)

// manifestLine is one line of the submitted manifest with the parser's
// complaints about it, shown in place under the editor.
type manifestLine struct {
	N      int
	Text   string
	Errors []string
}

type submitPage struct {
	page
	Manifest     string
	Note         string
	Tags         string
	Visibility   app.Visibility
	Secrets      bool
	Visibilities []app.Visibility
	Error        string // a problem that is not about one line
	Errors       []app.ManifestError
	Lines        []manifestLine // the manifest annotated, when it has errors
	ErrorLines   string         // "3,7" for the editor's gutter
	MaxSize      int
}

// defaultNote is the note of jobs submitted on the web without one.
const defaultNote = "Submitted on the web"

func (u *ui) newSubmitPage(w http.ResponseWriter, r *http.Request) submitPage {
	return submitPage{
		page: u.newPage(w, r, "Submit a build"), Note: defaultNote, Visibility: app.Unlisted, Secrets: true,
		Visibilities: []app.Visibility{app.Public, app.Unlisted, app.Private},
		MaxSize:      u.cfg.Limits.ManifestSize,
	}
}

// handleSubmitForm shows an empty editor (or one filled from ?manifest=).
func (u *ui) handleSubmitForm(w http.ResponseWriter, r *http.Request) {
	p := u.newSubmitPage(w, r)
	q := r.URL.Query()
	p.Manifest = q.Get("manifest")
	if n := q.Get("note"); n != "" {
		p.Note = n
	}
	u.render(w, r, http.StatusOK, "submit", p)
}

// handleResubmit fills the editor with a visible job's manifest and note.
func (u *ui) handleResubmit(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		u.renderError(w, r, http.StatusNotFound, "")
		return
	}
	job, err := u.svc.Job(r.Context(), id)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := u.newSubmitPage(w, r)
	p.Manifest, p.Tags, p.Visibility = job.Manifest, job.Tags, job.Visibility
	p.Note = resubmitNote(deref(job.Note))
	u.render(w, r, http.StatusOK, "submit", p)
}

// resubmitNote marks a single-line note as resubmitted, keeping it within
// the note size limit; longer notes are kept as they are.
func resubmitNote(note string) string {
	const suffix = " (resubmitted)"
	if note == "" {
		return defaultNote
	}
	if strings.Contains(note, "\n") || strings.HasSuffix(note, suffix) {
		return note
	}
	if len(note)+len(suffix) > app.MaxNoteSize {
		note = strings.ToValidUTF8(note[:app.MaxNoteSize-len(suffix)], "")
	}
	return note + suffix
}

// handleSubmit validates the manifest and creates the job. Parser errors
// come back with the editor, each under the line it concerns.
func (u *ui) handleSubmit(w http.ResponseWriter, r *http.Request) {
	// Form encoding can triple the size of the text (%XX).
	limit := int64(3*(u.cfg.Limits.ManifestSize+app.MaxNoteSize) + 64<<10)
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			u.renderError(w, r, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("The submitted form is too large: manifests are limited to %d bytes.", u.cfg.Limits.ManifestSize))
			return
		}
		u.renderError(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	f := r.PostForm
	p := u.newSubmitPage(w, r)
	p.Manifest = strings.ReplaceAll(f.Get("manifest"), "\r\n", "\n")
	p.Note, p.Tags = f.Get("note"), strings.TrimSpace(f.Get("tags"))
	p.Visibility = app.Visibility(f.Get("visibility"))
	p.Secrets = f.Get("secrets") != ""
	if !p.Visibility.Valid() {
		p.Error = "Choose a visibility: public, unlisted or private."
		p.Visibility = app.Unlisted
		u.render(w, r, http.StatusBadRequest, "submit", p)
		return
	}
	if _, err := app.ParseManifest([]byte(p.Manifest), u.cfg.Limits.ManifestSize); err != nil {
		p.annotate(err)
		u.render(w, r, http.StatusBadRequest, "submit", p)
		return
	}
	note, secrets := p.Note, p.Secrets
	job, err := u.svc.Submit(r.Context(), app.SubmitInput{
		Manifest: p.Manifest, Tags: splitTags(p.Tags), Note: &note, Secrets: &secrets, Visibility: &p.Visibility,
	})
	if err != nil {
		if code := app.ErrorCode(err); code == app.EINTERNAL {
			u.fail(w, r, err)
			return
		}
		p.Error = app.ErrorMessage(err)
		u.render(w, r, httpStatus(err), "submit", p)
		return
	}
	redirect(w, r, jobPath(app.UserFromContext(r.Context()).Username, job.ID))
}

// splitTags accepts "a/b/c" or "a b c".
func splitTags(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == '/' || r == ' ' || r == ',' })
}

// annotate attaches the parser's errors to the manifest's lines.
func (p *submitPage) annotate(err error) {
	var errs app.ManifestErrors
	if !errors.As(err, &errs) {
		p.Error = app.ErrorMessage(err)
		return
	}
	p.Errors = errs
	lines := strings.Split(p.Manifest, "\n")
	byLine := map[int][]string{}
	var marks []string
	for _, e := range errs {
		msg := e.Message
		if e.Field != "" {
			msg = e.Field + ": " + msg
		}
		if e.Line < 1 || e.Line > len(lines) {
			if p.Error != "" {
				p.Error += "\n"
			}
			p.Error += msg
			continue
		}
		if len(byLine[e.Line]) == 0 {
			marks = append(marks, strconv.Itoa(e.Line))
		}
		byLine[e.Line] = append(byLine[e.Line], msg)
	}
	for i, text := range lines {
		p.Lines = append(p.Lines, manifestLine{N: i + 1, Text: text, Errors: byLine[i+1]})
	}
	p.ErrorLines = strings.Join(marks, ",")
}
