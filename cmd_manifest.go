package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"builds/app"
)

// cmdManifest implements "builds manifest check FILE...".
func (m *Main) cmdManifest(ctx context.Context, args []string) error {
	pos, err := parseFlags(m.flagSet("manifest"), args, false)
	if err != nil {
		return err
	}
	if len(pos) < 2 || pos[0] != "check" {
		return usagef("manifest check FILE...")
	}
	if err := m.loadConfig(); err != nil {
		return err
	}
	bad := 0
	for _, path := range pos[1:] {
		if !m.checkManifest(path) {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d manifests have errors", bad, len(pos)-1)
	}
	return nil
}

// checkManifest prints "<file>: ok (...)" or each error as
// "<file>:<line>: <message>", and reports whether the file is valid.
func (m *Main) checkManifest(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(m.Stdout, "%s: %v\n", path, err)
		return false
	}
	man, err := app.ParseManifest(data, m.Config.Limits.ManifestSize)
	if err == nil {
		if cerr := m.Config.Limits.CheckArtifactCount(len(man.Artifacts)); cerr != nil {
			err = app.ManifestErrors{{Field: "artifacts", Message: app.ErrorMessage(cerr)}}
		}
	}
	if err == nil {
		fmt.Fprintf(m.Stdout, "%s: ok (%s)\n", path, man.Summary())
		return true
	}
	var errs app.ManifestErrors
	if !errors.As(err, &errs) {
		fmt.Fprintf(m.Stdout, "%s: %v\n", path, err)
		return false
	}
	for _, e := range errs {
		loc := path
		if e.Line > 0 {
			loc = fmt.Sprintf("%s:%d", path, e.Line)
		}
		msg := e.Message
		if e.Field != "" {
			msg = e.Field + ": " + msg
		}
		fmt.Fprintf(m.Stdout, "%s: %s\n", loc, msg)
	}
	return false
}

// cmdConfig implements "builds config dump".
func (m *Main) cmdConfig(args []string) error {
	pos, err := parseFlags(m.flagSet("config"), args, false)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "dump" {
		return usagef("config dump")
	}
	if err := m.loadConfig(); err != nil {
		return err
	}
	fmt.Fprint(m.Stdout, m.Config.Dump())
	return nil
}
