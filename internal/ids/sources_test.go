package ids_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ulidMakers are ulid's own ways of making an id: Make, MustNewDefault and
// DefaultEntropy draw from its math/rand stream seeded at start, Monotonic
// steps from the previous id, and New or MustNew take whatever reader the
// caller found. Outside this package production code makes ids with New or
// At.
var ulidMakers = map[string]bool{
	"Make": true, "MustNewDefault": true, "DefaultEntropy": true,
	"Monotonic": true, "New": true, "MustNew": true,
}

// TestNoOtherIDSource: no production file of the module (tests apart) makes
// a ULID but through this package.
func TestNoOtherIDSource(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	self := filepath.Join(root, "internal", "ids")
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") || path == self {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		for _, name := range ulidNames(t, fset, f) {
			ast.Inspect(f, func(n ast.Node) bool {
				if s, ok := n.(*ast.SelectorExpr); ok {
					if x, ok := s.X.(*ast.Ident); ok && x.Name == name && ulidMakers[s.Sel.Name] {
						t.Errorf("%s: ulid.%s: make ids with internal/ids", fset.Position(s.Pos()), s.Sel.Name)
					}
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read %d production files under %s: not the module", files, root)
	}
}

// ulidNames returns the names under which f imports ulid.
func ulidNames(t *testing.T, fset *token.FileSet, f *ast.File) []string {
	var names []string
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if path != "github.com/oklog/ulid/v2" && path != "github.com/oklog/ulid" {
			continue
		}
		switch {
		case imp.Name == nil:
			names = append(names, "ulid")
		case imp.Name.Name == ".":
			t.Errorf("%s: ulid imported with a dot: its constructors would go unseen", fset.Position(imp.Pos()))
		case imp.Name.Name != "_":
			names = append(names, imp.Name.Name)
		}
	}
	return names
}
