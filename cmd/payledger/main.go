// Command payledger is the payledger binary: the server and the operator's and
// auditor's tools, one subcommand per file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"syscall"
)

// command is one subcommand. run parses args itself (with flag.NewFlagSet) and
// writes to stdout and stderr; an *exitError chooses the exit code.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var subcommands = map[string]*command{}

// register adds a subcommand; each subcommand's file calls it from init.
func register(c *command) {
	if _, dup := subcommands[c.name]; dup {
		panic("payledger: subcommand registered twice: " + c.name)
	}
	subcommands[c.name] = c
}

// exitError carries an exit code other than 1. A quiet one was printed
// already (the flag package prints its parse errors, with the usage).
type exitError struct {
	code  int
	err   error
	quiet bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	name := args[0]
	if name == "-version" || name == "--version" {
		name = "version"
	}
	c, ok := subcommands[name]
	if !ok {
		fmt.Fprintf(stderr, "payledger: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.quiet {
		return ee.code
	}
	fmt.Fprintf(stderr, "payledger %s: %v\n", c.name, err)
	if ee != nil {
		return ee.code
	}
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: payledger <command> [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, subcommands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'payledger <command> -h' for the flags of one command.")
}

// flagSet is a command's flags, some of them bound to PAYLEDGER_*
// variables. Only cmd/ reads the environment; packages below take configs.
type flagSet struct {
	*flag.FlagSet
	env     map[string]string // flag name: variable
	fromEnv map[string]bool   // flags a variable set (Visit reports only the command line's)
}

// bindEnv binds flags to environment variables (flag name: variable): the
// one place that does, so that each flag's -h line ends with its variable,
// "(env PAYLEDGER_X)", and parse sets the flag from it before the command
// line (where the flag wins).
func (fs *flagSet) bindEnv(vars map[string]string) {
	for name, v := range vars {
		f := fs.Lookup(name)
		if f == nil {
			panic("payledger: bindEnv of an unknown flag --" + name)
		}
		if fs.env == nil {
			fs.env = map[string]string{}
		}
		fs.env[name] = v
		f.Usage += " (env " + v + ")"
	}
}

// applyEnv sets the bound flags from their variables. Each value goes
// through its flag's own parser, so a variable holding something the flag
// would refuse (PAYLEDGER_NATS_REPLICAS=three, PAYLEDGER_NO_NATS=yes) stops
// the command with exit status 2, naming the variable, rather than falling
// back to the default unseen. An empty variable counts as unset
// (PAYLEDGER_DATA_DIR= means ./data, not the current directory). A flag set
// from a variable is not "set" for Visit, which reports the command line.
func (fs *flagSet) applyEnv() error {
	for _, name := range slices.Sorted(maps.Keys(fs.env)) {
		v := os.Getenv(fs.env[name])
		if v == "" {
			continue
		}
		if err := fs.Lookup(name).Value.Set(v); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("%s=%q (for --%s): %w", fs.env[name], v, name, err)}
		}
		if fs.fromEnv == nil {
			fs.fromEnv = map[string]bool{}
		}
		fs.fromEnv[name] = true
	}
	return nil
}

// valueError refuses the value of flag name, which parsed but cannot be
// used, with exit status 2, naming where it came from as applyEnv does:
// PAYLEDGER_X="v" (for --name) when the variable set it, else --name v.
func (fs *flagSet) valueError(name string, err error) error {
	f := fs.Lookup(name)
	onCommandLine := false
	fs.Visit(func(v *flag.Flag) { onCommandLine = onCommandLine || v.Name == name })
	if fs.fromEnv[name] && !onCommandLine {
		return &exitError{code: 2, err: fmt.Errorf("%s=%q (for --%s): %w", fs.env[name], f.Value.String(), name, err)}
	}
	v := f.Value.String()
	if g, ok := f.Value.(flag.Getter); ok {
		if _, isString := g.Get().(string); isString {
			v = strconv.Quote(v)
		}
	}
	return &exitError{code: 2, err: fmt.Errorf("--%s %s: %w", name, v, err)}
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet("payledger "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &flagSet{FlagSet: fs}
}
