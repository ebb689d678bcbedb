package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersion: payledger version, -version and --version print one line
// naming the binary's module version and the Go version, and nothing else;
// an argument is a usage error.
func TestVersion(t *testing.T) {
	var first string
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		code, out, errs := runCmd(t, args...)
		if code != 0 || errs != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errs)
		}
		if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "payledger ") || !strings.Contains(out, runtime.Version()) {
			t.Fatalf("%v printed %q, want one line naming payledger and %s", args, out, runtime.Version())
		}
		if first == "" {
			first = out
		} else if out != first {
			t.Fatalf("%v printed %q, version printed %q", args, out, first)
		}
	}
	if code, _, _ := runCmd(t, "version", "extra"); code != 2 {
		t.Fatalf("version extra: exit %d, want 2", code)
	}
}

// TestVersionLine: the module version, the VCS revision (shortened, marked
// when the tree had changes) and commit time, the Go version and platform.
func TestVersionLine(t *testing.T) {
	plat := runtime.GOOS + "/" + runtime.GOARCH
	for _, c := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{nil, "payledger (unknown) " + runtime.Version() + " " + plat},
		{&debug.BuildInfo{GoVersion: "go1.24.4", Main: debug.Module{Version: "v1.2.3"}},
			"payledger v1.2.3 go1.24.4 " + plat},
		{&debug.BuildInfo{GoVersion: "go1.24.4", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "8669811e0c3a4b5d6e7f8091a2b3c4d5e6f70819"},
			{Key: "vcs.time", Value: "2025-03-01T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		}}, "payledger (devel) revision 8669811e0c3a-modified 2025-03-01T12:00:00Z go1.24.4 " + plat},
		{&debug.BuildInfo{GoVersion: "go1.24.4", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc123"},
			{Key: "vcs.modified", Value: "false"},
		}}, "payledger v1.2.3 revision abc123 go1.24.4 " + plat},
	} {
		if got := versionLine(c.bi); got != c.want {
			t.Errorf("versionLine = %q, want %q", got, c.want)
		}
	}
}
