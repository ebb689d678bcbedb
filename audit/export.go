package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"regexp"
	"strconv"

	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/stream"
)

// maxExportLine bounds one line of an export: an event's data is at most
// 1 MiB, its envelope strings a few KiB even escaped.
const maxExportLine = 4 << 20

// ReadExport iterates over the events of an export (payledger export's JSON
// Lines), in constant memory. Each line must be exactly the form export
// writes (stream.AppendJSON) of the event it decodes to, so a line altered
// in any way is refused even where the change would not touch the hash; a
// change that does is left to the chain check (ledger.Verifier,
// boltlog.Store.Import), which names the sequence. Iteration stops at the
// first error: an *ExportError naming the line (and the sequence it claims)
// or the reader's error.
func ReadExport(r io.Reader) iter.Seq2[ledger.Event, error] {
	return func(yield func(ledger.Event, error) bool) {
		br := bufio.NewReaderSize(r, 256<<10)
		var line, canon []byte
		for n := 1; ; n++ {
			var err error
			line, err = readLine(br, line[:0])
			if errors.Is(err, io.EOF) && len(line) == 0 {
				return
			}
			if err != nil && !errors.Is(err, io.EOF) {
				if errors.Is(err, errLineTooLong) {
					err = &ExportError{Line: n, Reason: err.Error()}
				}
				yield(ledger.Event{}, err)
				return
			}
			var e ledger.Event
			if jerr := json.Unmarshal(line, &e); jerr != nil {
				yield(ledger.Event{}, &ExportError{Line: n, Seq: seqOf(line), Reason: "not an event: " + jerr.Error()})
				return
			}
			canon = stream.AppendJSON(canon[:0], &e)
			if !bytes.Equal(canon, line) {
				yield(ledger.Event{}, &ExportError{Line: n, Seq: e.Seq, Reason: "not in the form payledger export writes: the line was altered or re-encoded"})
				return
			}
			if !yield(e, nil) || err != nil {
				return
			}
		}
	}
}

var errLineTooLong = fmt.Errorf("line longer than %d bytes", maxExportLine)

// readLine appends the next line, without its LF, to dst. At the end of the
// input it returns io.EOF with the last line if that had no LF.
func readLine(br *bufio.Reader, dst []byte) ([]byte, error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(dst)+len(chunk) > maxExportLine+1 {
			return dst, errLineTooLong
		}
		dst = append(dst, chunk...)
		switch {
		case err == nil:
			return dst[:len(dst)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return dst, err
		}
	}
}

// seqOf finds the "seq" of a line that is not a whole event, for the error.
func seqOf(line []byte) uint64 {
	m := seqField.FindSubmatch(line)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return n
}

var seqField = regexp.MustCompile(`"seq"\s*:\s*([0-9]{1,20})`)
