package ociruntime

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// logger writes runc-style log lines: JSON objects {"level","msg","time"}
// with --log-format json (the containerd shim reads them from --log to
// report errors), logrus text lines otherwise.
type logger struct {
	w     io.Writer
	json  bool
	debug bool
	now   func() time.Time
}

func (l *logger) log(level, msg string) {
	if l == nil || l.w == nil || (level == "debug" && !l.debug) {
		return
	}
	t := l.now().Format(time.RFC3339Nano)
	if l.json {
		b, _ := json.Marshal(struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Time  string `json:"time"`
		}{level, msg, t})
		l.w.Write(append(b, '\n'))
		return
	}
	fmt.Fprintf(l.w, "time=%q level=%s msg=%s\n", t, level, quoteIfNeeded(msg))
}

func (l *logger) errorf(format string, a ...any) { l.log("error", fmt.Sprintf(format, a...)) }
func (l *logger) warnf(format string, a ...any)  { l.log("warning", fmt.Sprintf(format, a...)) }
func (l *logger) debugf(format string, a ...any) { l.log("debug", fmt.Sprintf(format, a...)) }

// quoteIfNeeded quotes a logrus text value containing spaces or quotes.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \"=\n\t\\") {
		return strconv.Quote(s)
	}
	return s
}
