package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

func init() {
	register(&command{name: "version", summary: "print the binary's version, VCS revision and Go version", run: runVersion})
}

// runVersion prints versionLine of the running binary; -version and
// --version at the top level run it too.
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: payledger version")
		fmt.Fprintln(stderr, "\nPrints one line: the module version, the VCS revision and commit time the binary")
		fmt.Fprintln(stderr, "was built from (when the build recorded them), the Go version and the platform.")
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	fmt.Fprintln(stdout, versionLine(bi))
	return nil
}

// versionLine is "payledger <module version> [revision <12 hex
// digits>[-modified] [<commit time>]] <go version> <os>/<arch>", from the
// build info bi (nil: none recorded). go build in a git checkout records
// the revision; go install module@version records the version.
func versionLine(bi *debug.BuildInfo) string {
	version, goVersion := "(unknown)", runtime.Version()
	var rev, at string
	modified := false
	if bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	var b strings.Builder
	b.WriteString("payledger " + version)
	if rev != "" {
		b.WriteString(" revision " + rev[:min(len(rev), 12)])
		if modified {
			b.WriteString("-modified")
		}
	}
	if at != "" {
		b.WriteString(" " + at)
	}
	b.WriteString(" " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH)
	return b.String()
}
