package main

import (
	"strings"

	"codeberg.org/emersion/go-scfg"
)

// hutConfig returns a hut configuration (scfg, the format of
// ~/.config/hut/config) for one instance named name whose builds service
// is at origin, authenticated with token. It is written by the scfg
// library, so the result parses under hut's own grammar (a block's
// directives each on a line of their own).
func hutConfig(name, origin, token string) string {
	blk := scfg.Block{{
		Name:   "instance",
		Params: []string{name},
		Children: scfg.Block{
			{Name: "access-token", Params: []string{token}},
			{Name: "builds", Children: scfg.Block{{Name: "origin", Params: []string{origin}}}},
		},
	}}
	var b strings.Builder
	// Write fails only on an empty directive name (every one above is
	// set) or a failing writer (a strings.Builder never fails).
	_ = scfg.Write(&b, blk)
	return b.String()
}
