package main

import (
	"slices"
	"strings"
	"testing"
)

// TestUsageErrors: every subcommand (and every worker kind) answers an
// unknown flag with exit status 2 and the flag package's message, and -h
// with 0, before it opens or listens on anything.
func TestUsageErrors(t *testing.T) {
	var cmds [][]string
	for name := range subcommands {
		if name == "worker" {
			continue
		}
		cmds = append(cmds, []string{name})
	}
	for kind := range workers {
		cmds = append(cmds, []string{"worker", kind})
	}
	slices.SortFunc(cmds, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	if len(cmds) < 13 {
		t.Fatalf("only %d subcommands registered: %v", len(cmds), cmds)
	}
	for _, c := range cmds {
		t.Run(strings.Join(c, "_"), func(t *testing.T) {
			code, _, errs := runCmd(t, append(slices.Clone(c), "--no-such-flag")...)
			if code != 2 || !strings.Contains(errs, "flag provided but not defined: -no-such-flag") {
				t.Errorf("unknown flag: exit %d, stderr %q; want 2 and the flag named", code, errs)
			}
			if code, _, errs := runCmd(t, append(slices.Clone(c), "-h")...); code != 0 {
				t.Errorf("-h: exit %d, stderr %q; want 0", code, errs)
			}
		})
	}
}
