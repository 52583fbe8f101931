package bbconf

import (
	"fmt"
	"strconv"
)

// Position is a place in a parsed file. Line and Col are 1-based; Col counts
// bytes. A zero Line means the position is not inside a file (for example a
// value given to [Data.Set]).
type Position struct {
	File string
	Line int
	Col  int
}

// String formats p as "file:line:col", "file" or "(api)" when unknown.
func (p Position) String() string {
	if p.Line == 0 {
		if p.File == "" {
			return "(api)"
		}
		return p.File
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
}

// Error is a syntax or evaluation error at a position. It formats as
// "file:line:col: message". Err, when set, is the underlying cause (for
// example an I/O error while reading an included file).
type Error struct {
	Pos Position
	Msg string
	Err error
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Pos.Line == 0 && e.Pos.File == "" {
		return e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

func errorf(pos Position, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}
