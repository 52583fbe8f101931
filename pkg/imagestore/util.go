package imagestore

import (
	"bytes"
	"context"
	"io"
)

// ctxReadCloser fails reads once ctx is done.
type ctxReadCloser struct {
	ctx context.Context
	io.ReadCloser
}

func (c ctxReadCloser) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.ReadCloser.Read(p)
}

func bytesOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}
