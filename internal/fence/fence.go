// Package fence is a fencing sink on local disk: a downstream store that
// remembers the highest term (fencing token) it has accepted and rejects
// any write from a lower one. The example's leader writes its work through
// it, and the fault campaign (bench/faults) reads its log to check that no
// stale leader's write ever got through.
//
// A sink is two files: PATH holds the state (highest term, accepted and
// rejected counts) and PATH.log one line per write attempt, both changed
// only under flock(2) on PATH, so processes on one host can share them.
package fence

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrStale is returned by Write for a term lower than one the sink has
// already accepted: the writer has been superseded and must stop.
var ErrStale = errors.New("fenced: a later term has written")

// Sink is a fencing sink at a path.
type Sink struct {
	path string
}

// Open returns the sink at path; the files are created on the first write.
func Open(path string) *Sink { return &Sink{path: path} }

// State is what the sink remembers.
type State struct {
	// Highest is the highest term accepted so far.
	Highest int64
	// Accepted and Rejected count write attempts.
	Accepted, Rejected int64
}

// The state is one fixed-width line, rewritten in place by a single write.
const stateFormat = "%020d %020d %020d\n"

// Write records one unit of work by id in term, unless a higher term has
// written before: then it counts the attempt as rejected and returns an
// error for which errors.Is(err, ErrStale) is true.
func (s *Sink) Write(term int64, id string) error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("fence %s: %w", s.path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("fence %s: flock: %w", s.path, err)
	}
	st, err := readState(f)
	if err != nil {
		return fmt.Errorf("fence %s: %w", s.path, err)
	}
	verdict, stale := "ok", term < st.Highest
	if stale {
		verdict = "rejected"
		st.Rejected++
	} else {
		st.Highest = term
		st.Accepted++
	}
	lf, err := os.OpenFile(s.path+".log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("fence %s: %w", s.path, err)
	}
	_, err = fmt.Fprintf(lf, "%s %d %s %d\n", verdict, term, id, time.Now().UnixNano())
	if cerr := lf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fence %s: log: %w", s.path, err)
	}
	if _, err := f.WriteAt([]byte(fmt.Sprintf(stateFormat, st.Highest, st.Accepted, st.Rejected)), 0); err != nil {
		return fmt.Errorf("fence %s: %w", s.path, err)
	}
	if stale {
		return fmt.Errorf("fence %s: term %d by %s, highest accepted %d: %w", s.path, term, id, st.Highest, ErrStale)
	}
	return nil
}

func readState(f *os.File) (State, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<10))
	if err != nil || len(b) == 0 {
		return State{}, err
	}
	var st State
	if _, err := fmt.Sscanf(string(b), stateFormat, &st.Highest, &st.Accepted, &st.Rejected); err != nil {
		return State{}, fmt.Errorf("state %q cannot be decoded: %w", b, err)
	}
	return st, nil
}

// ReadState returns the sink's state (zero if it was never written).
func (s *Sink) ReadState() (State, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("fence %s: %w", s.path, err)
	}
	defer f.Close()
	st, err := readState(f)
	if err != nil {
		return State{}, fmt.Errorf("fence %s: %w", s.path, err)
	}
	return st, nil
}

// Entry is one write attempt in the sink's log.
type Entry struct {
	Accepted bool
	Term     int64
	ID       string
	At       time.Time
}

// ReadLog returns every write attempt in order.
func (s *Sink) ReadLog() ([]Entry, error) {
	f, err := os.Open(s.path + ".log")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fence %s: %w", s.path, err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) != 4 || (fields[0] != "ok" && fields[0] != "rejected") {
			return nil, fmt.Errorf("fence %s.log line %d malformed: %q", s.path, n, sc.Text())
		}
		term, err1 := strconv.ParseInt(fields[1], 10, 64)
		ns, err2 := strconv.ParseInt(fields[3], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("fence %s.log line %d: %w", s.path, n, err)
		}
		out = append(out, Entry{Accepted: fields[0] == "ok", Term: term, ID: fields[2], At: time.Unix(0, ns)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fence %s.log: %w", s.path, err)
	}
	return out, nil
}
