package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"builds/app"
	"builds/runner"
)

// cmdLayer manages the runner's package layers (runner/layers.go):
// `builds layer list`, `builds layer rm KEY...`, `builds layer prune`.
func (m *Main) cmdLayer(args []string) error {
	pos, err := parseFlags(m.flagSet("layer"), args, false)
	if err != nil {
		return err
	}
	if err := m.loadConfig(); err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("layer: want list, rm KEY... or prune")
	}
	ls := layerStore(m.Config, m.Log)
	switch pos[0] {
	case "list":
		if len(pos) > 1 {
			return usagef("layer list: unexpected argument %q", pos[1])
		}
		list, err := ls.List()
		if err != nil {
			return err
		}
		return printLayers(m.Stdout, list)
	case "rm":
		if len(pos) < 2 {
			return usagef("layer rm: want one or more layer keys (at least 4 characters each, see builds layer list)")
		}
		for _, k := range pos[1:] {
			gone, err := ls.Remove(k)
			for _, g := range gone {
				fmt.Fprintf(m.Stderr, "removed layer %s\n", g)
			}
			if err != nil {
				return err
			}
		}
		return nil
	case "prune":
		if len(pos) > 1 {
			return usagef("layer prune: unexpected argument %q", pos[1])
		}
		n, err := ls.Prune()
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stderr, "removed %d layers (expired, orphaned, or beyond [runner] layer-cache-size)\n", n)
		return nil
	}
	return usagef("layer: unknown command %q (want list, rm or prune)", pos[0])
}

// printLayers writes the layer table.
func printLayers(w io.Writer, list []*runner.LayerInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tIMAGE\tPACKAGES\tREPOSITORIES\tSIZE\tMADE\tLAST USED")
	var total int64
	for _, l := range list {
		repos := make([]string, len(l.Recipe.Repositories))
		for i, r := range l.Recipe.Repositories {
			repos[i] = r.Name
		}
		fmt.Fprintf(tw, "%s\t%s (%s)\t%s\t%s\t%s\t%s\t%s\n", l.Key, l.Shape.Image, l.Shape.Arch,
			strings.Join(l.Recipe.Packages, " "), orDash(strings.Join(repos, " ")), app.HumanSize(l.Size),
			l.Created.Local().Format("2006-01-02 15:04"), l.LastUsed.Local().Format("2006-01-02 15:04"))
		total += l.Size
	}
	if len(list) == 0 {
		fmt.Fprintln(tw, "(no package layers yet: jobs with packages: make them)")
	} else {
		fmt.Fprintf(tw, "%d layers, %s\n", len(list), app.HumanSize(total))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
