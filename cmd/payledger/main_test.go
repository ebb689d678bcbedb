package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// allCommands is every subcommand, each worker kind as its own.
func allCommands(t *testing.T) [][]string {
	t.Helper()
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
	return cmds
}

// TestUsageErrors: every subcommand (and every worker kind) answers an
// unknown flag with exit status 2 and the flag package's message, and -h
// with 0, before it opens or listens on anything.
func TestUsageErrors(t *testing.T) {
	for _, c := range allCommands(t) {
		t.Run(strings.Join(c, "_"), func(t *testing.T) {
			code, _, errs := runCmd(t, append(slices.Clone(c), "--no-such-flag")...)
			if n := strings.Count(errs, "flag provided but not defined: -no-such-flag"); code != 2 || n != 1 {
				t.Errorf("unknown flag: exit %d, stderr %q; want 2 and the flag named once (%d times)", code, errs, n)
			}
			if code, _, errs := runCmd(t, append(slices.Clone(c), "-h")...); code != 0 {
				t.Errorf("-h: exit %d, stderr %q; want 0", code, errs)
			}
		})
	}
}

// TestHelpTexts: every subcommand's (and worker kind's) -h has the same
// shape: a "usage: payledger <command> ..." line, a blank line, a
// description, and a blank line (or a heading ending in ":") before its
// flags, each once.
func TestHelpTexts(t *testing.T) {
	for _, c := range allCommands(t) {
		cmd := strings.Join(c, " ")
		code, _, errs := runCmd(t, append(slices.Clone(c), "-h")...)
		lines := strings.Split(errs, "\n")
		if code != 0 || !strings.HasPrefix(lines[0], "usage: payledger "+cmd) {
			t.Errorf("%s -h: exit %d, starts %q; want \"usage: payledger %s\"", cmd, code, lines[0], cmd)
			continue
		}
		if n := strings.Count(errs, "usage: payledger "+cmd); n != 1 {
			t.Errorf("%s -h: the usage line %d times", cmd, n)
		}
		i := 1
		for i < len(lines) && strings.HasPrefix(lines[i], "       payledger ") {
			i++ // more usage lines
		}
		if i+1 >= len(lines) || lines[i] != "" || lines[i+1] == "" || strings.HasPrefix(lines[i+1], "  -") {
			t.Errorf("%s -h: no blank line and description after the usage:\n%s", cmd, errs)
		}
		for j, line := range lines {
			if strings.HasPrefix(line, "  -") {
				if prev := lines[j-1]; prev != "" && !strings.HasSuffix(prev, ":") {
					t.Errorf("%s -h: no blank line before the flags, after %q", cmd, prev)
				}
				break
			}
		}
	}
}

// TestEnvVariablesNamedInHelp: the -h line of every flag bound to a
// PAYLEDGER_* variable ends with "(env PAYLEDGER_X)", in that one form, and
// docs/operations.md's Configuration table lists exactly those variables,
// flags and commands. Binding a flag to a variable (flagSet.bindEnv) is
// what writes its -h mention, and applyEnv is the only reader of the
// environment in the binary, so a variable read any other way or left out
// of the table fails here.
func TestEnvVariablesNamedInHelp(t *testing.T) {
	canon := regexp.MustCompile(` \(env (PAYLEDGER_[A-Z0-9_]+)\)`)
	help := map[string]string{} // "command --flag": variable
	for _, c := range allCommands(t) {
		cmd := strings.Join(c, " ")
		code, _, errs := runCmd(t, append(slices.Clone(c), "-h")...)
		if code != 0 {
			t.Fatalf("%s -h: exit %d", cmd, code)
		}
		for name, usage := range flagHelp(errs) {
			m := canon.FindAllStringSubmatch(usage, -1)
			if n := strings.Count(usage, "PAYLEDGER_"); n != len(m) || n > 1 {
				t.Errorf("%s --%s: %q names a variable other than as one \"(env PAYLEDGER_X)\"", cmd, name, usage)
			}
			if len(m) == 1 {
				help[cmd+" --"+name] = m[0][1]
			}
		}
	}

	docs := configTable(t, allCommands(t))
	for k, v := range docs {
		if help[k] != v {
			t.Errorf("docs/operations.md: %s reads %s; its -h says %q", k, v, help[k])
		}
	}
	for k, v := range help {
		if _, ok := docs[k]; !ok {
			t.Errorf("%s reads %s (its -h says); docs/operations.md's Configuration table does not list it", k, v)
		}
	}

	// Nothing else in the binary reads the environment.
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, call := range []string{"os.Getenv(", "os.LookupEnv(", "os.Environ("} {
			n += strings.Count(string(b), call)
		}
		if want := map[bool]int{true: 1, false: 0}[f == "main.go"]; n != want {
			t.Errorf("%s reads the environment %d times (want %d): bind the flag with flagSet.bindEnv instead", f, n, want)
		}
	}
}

// flagHelp parses flag.PrintDefaults' output within a -h text: flag name to
// its usage, lines joined.
func flagHelp(out string) map[string]string {
	flags := map[string]string{}
	name := ""
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			name, _, _ = strings.Cut(strings.TrimPrefix(line, "  -"), " ")
			name, _, _ = strings.Cut(name, "\t")
			if _, usage, ok := strings.Cut(line, "\t"); ok {
				flags[name] = usage
			}
		case name != "" && strings.HasPrefix(line, "    \t"):
			flags[name] = strings.TrimSpace(flags[name] + " " + strings.TrimPrefix(line, "    \t"))
		default:
			name = ""
		}
	}
	return flags
}

// configTable reads docs/operations.md's Configuration table: "command
// --flag": variable, a row's variables paired with its flags in order, and
// "worker" standing for every worker kind.
func configTable(t *testing.T, cmds [][]string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "| variable | flag | commands | default |\n| --- | --- | --- | --- |\n")
	if !ok {
		t.Fatal("docs/operations.md: no Configuration table")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	code := regexp.MustCompile("`([^`]+)`")
	out := map[string]string{}
	for _, row := range strings.Split(table, "\n") {
		cols := strings.Split(row, "|")
		if len(cols) != 6 {
			t.Fatalf("docs/operations.md: bad row %q", row)
		}
		var vars, flags, commands []string
		for _, m := range code.FindAllStringSubmatch(cols[1], -1) {
			vars = append(vars, m[1])
		}
		for _, m := range code.FindAllStringSubmatch(cols[2], -1) {
			flags = append(flags, m[1])
		}
		for _, m := range code.FindAllStringSubmatch(cols[3], -1) {
			commands = append(commands, m[1])
		}
		if len(vars) == 0 || len(vars) != len(flags) || len(commands) == 0 {
			t.Fatalf("docs/operations.md: row %q: %d variables for %d flags, %d commands", row, len(vars), len(flags), len(commands))
		}
		for _, c := range commands {
			found := false
			for _, cmd := range cmds {
				if full := strings.Join(cmd, " "); full == c || cmd[0] == c {
					found = true
					for i, v := range vars {
						out[full+" "+flags[i]] = v
					}
				}
			}
			if !found {
				t.Errorf("docs/operations.md: row %q names a command %q there is not", row, c)
			}
		}
	}
	return out
}
