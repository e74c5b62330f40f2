// Package wire is the Fluentd Forward protocol v1 (and v1.5) as a codec: bytes in, values
// out. It has no goroutines and opens no sockets.
//
// A Decoder frames a byte stream (a TCP or unix connection) into frames of any of the
// four modes — Message, Forward, PackedForward, CompressedPackedForward — and of the JSON
// variant fluent-logger-golang sends with MarshalAsJSON. Every frame is delivered as a run
// of validated, concatenated msgpack [time, record] entries: records stay raw msgpack and
// are never decoded into Go maps. PackedForward streams are handed out without a copy.
//
// Guarantees:
//   - Every declared length (str, bin, ext, array and map counts) is checked against
//     Limits before the decoder waits for or allocates the bytes it announces, so a 4 GiB
//     header costs nothing; decompression stops at Limits.MaxDecompressedBytes.
//   - Errors are *DecodeError values carrying the byte offset in the stream and wrapping
//     one of the sentinel errors (ErrFrameTooLarge, ErrMalformed, ...); Reason(err) gives a
//     short label for per-reason counters.
//   - Slices in a Frame point into the decoder's buffers and are valid until the next call.
//   - Entries that are well-formed msgpack but not a valid event ([float time, ...], a
//     record that is not a map) are dropped and counted in Frame.Invalid, as fluentd does;
//     the frame is still acknowledged so the sender does not resend it forever.
//
// The encoders build what fwdmux sends: PackedForward messages with size/chunk options,
// ack replies, EventTime, and both sides of the HELO/PING/PONG shared_key handshake.
//
// Typical use on a connection:
//
//	dec := wire.NewDecoder(conn, wire.Limits{})
//	defer dec.Close()
//	var f wire.Frame
//	for {
//		if err := dec.Next(&f); err != nil {
//			return err // io.EOF at a clean end
//		}
//		handle(f.Tag, f.Entries, f.Count)
//		if f.Chunk != nil {
//			conn.Write(wire.AppendAck(nil, f.Chunk))
//		}
//	}
package wire
