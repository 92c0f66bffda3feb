package app

import (
	"fmt"
	"sort"
	"strings"
)

// DefaultManifestMaxSize is the manifest size limit used when ParseManifest
// is given none; it is the size of upstream's job.manifest column.
const DefaultManifestMaxSize = 16384

// Manifest is a parsed and validated build manifest (behaviour.md §1).
type Manifest struct {
	Raw          string // the text exactly as submitted
	Image        string
	Arch         string // "" when absent
	Packages     []string
	Repositories []Repository // document order
	Sources      []string
	Environment  []EnvVar // document order
	Secrets      []string // UUIDs or names
	OAuth        string
	Tasks        []ManifestTask // document order
	Triggers     []ManifestTrigger
	Artifacts    []string
	Shell        bool
}

// Repository is one entry of the manifest's repositories map.
type Repository struct{ Name, Source string }

// ManifestTask is one task. Script is the YAML scalar's value: block scalars
// keep their content and chomping (a "|" block ends in "\n"), nothing is
// stripped, and YAML itself turns CRLF line breaks into "\n".
type ManifestTask struct{ Name, Script string }

// ManifestTrigger is one entry of the manifest's triggers list.
type ManifestTrigger struct {
	Action    string // "email" | "webhook"
	Condition string // "always" | "success" | "failure"
	To        string // email
	Cc        string // email
	InReplyTo string // email (in_reply_to key)
	URL       string // webhook
}

// ManifestError is one problem found in a manifest. Line is 1-based; 0 means
// the problem concerns the manifest as a whole.
type ManifestError struct {
	Line    int
	Field   string // top-level key, "" when none applies
	Message string
}

// Error renders e as "line 7: tasks: Duplicate task 'build'".
func (e ManifestError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ManifestErrors is every problem found in a manifest, in line order.
type ManifestErrors []ManifestError

// Error renders one error per line.
func (es ManifestErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual errors to errors.Is and errors.As.
func (es ManifestErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// As lets errors.As see manifest errors as an EINVALID *Error, so ErrorCode
// and ErrorMessage report them to users instead of "internal error".
func (es ManifestErrors) As(target any) bool {
	if t, ok := target.(**Error); ok {
		*t = &Error{Code: EINVALID, Message: es.Error()}
		return true
	}
	return false
}

// Summary returns a one-line description such as
// "image debian/stable, tasks: build, test".
func (m *Manifest) Summary() string {
	if m == nil {
		return ""
	}
	s := "image " + m.Image
	if m.Arch != "" {
		s += " (" + m.Arch + ")"
	}
	if len(m.Tasks) == 0 {
		s += ", no tasks"
	} else {
		s += ", tasks: " + strings.Join(m.TaskNames(), ", ")
	}
	if m.Shell {
		s += ", shell"
	}
	return s
}

// TaskNames returns the task names in order.
func (m *Manifest) TaskNames() []string {
	names := make([]string, len(m.Tasks))
	for i, t := range m.Tasks {
		names[i] = t.Name
	}
	return names
}

// ParseManifest parses and validates a build manifest. maxSize <= 0 means
// DefaultManifestMaxSize. On failure it returns ManifestErrors holding every
// error found, in line order.
//
// Checks are the union of upstream's two validators with the wording of the
// Python one (behaviour.md §1.2). Only the first YAML document is used; a
// second non-empty one is an error, as with PyYAML's safe_load.
func ParseManifest(data []byte, maxSize int) (*Manifest, error) {
	if maxSize <= 0 {
		maxSize = DefaultManifestMaxSize
	}
	if len(data) > maxSize {
		return nil, ManifestErrors{{Message: fmt.Sprintf("Manifest must be less than %d bytes", maxSize)}}
	}
	root, yerr := decodeManifestYAML(data)
	if yerr != nil {
		return nil, ManifestErrors{*yerr}
	}
	p := newManifestParser()
	m := &Manifest{Raw: string(data)}
	p.parse(root, m)
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		return nil, p.errs
	}
	return m, nil
}
