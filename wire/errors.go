package wire

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by *DecodeError; test with errors.Is.
var (
	ErrFrameTooLarge        = errors.New("frame larger than the limit")
	ErrDecompressedTooLarge = errors.New("decompressed stream larger than the limit")
	ErrTooDeep              = errors.New("nesting deeper than the limit")
	ErrMalformed            = errors.New("malformed msgpack")
	ErrTruncated            = errors.New("connection ended inside a frame")
	ErrBadFrame             = errors.New("not a forward protocol frame")
	ErrBadJSON              = errors.New("malformed JSON frame")
	ErrCompression          = errors.New("bad compressed stream")
	ErrHandshake            = errors.New("handshake failed")
)

// DecodeError says where in the stream decoding failed and why.
type DecodeError struct {
	Offset int64  // byte offset in the stream (or in the buffer for byte-level parsers)
	Detail string // human-readable detail
	Err    error  // one of the sentinels
}

func (e *DecodeError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("at byte %d: %v", e.Offset, e.Err)
	}
	return fmt.Sprintf("at byte %d: %v: %s", e.Offset, e.Err, e.Detail)
}

func (e *DecodeError) Unwrap() error { return e.Err }

func derr(off int64, sentinel error, format string, args ...any) *DecodeError {
	return &DecodeError{Offset: off, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// Reason returns a short snake_case label for err, for per-reason counters:
// frame_too_large, decompressed_too_large, too_deep, malformed, truncated, bad_frame,
// bad_json, compression, handshake, or "io" for anything else.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return "frame_too_large"
	case errors.Is(err, ErrDecompressedTooLarge):
		return "decompressed_too_large"
	case errors.Is(err, ErrTooDeep):
		return "too_deep"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrBadFrame):
		return "bad_frame"
	case errors.Is(err, ErrBadJSON):
		return "bad_json"
	case errors.Is(err, ErrCompression):
		return "compression"
	case errors.Is(err, ErrHandshake):
		return "handshake"
	}
	return "io"
}
