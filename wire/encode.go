package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"

	"github.com/tinylib/msgp/msgp"
)

// AppendPackedForwardHead appends the start of a PackedForward message — the 3-array
// header, the tag and a str32 header for a stream of streamLen bytes — so the caller can
// write the entries without copying them (writev), then AppendForwardOption. The stream
// is sent as str32, as fluentd's out_forward does: every receiver accepts it.
func AppendPackedForwardHead(dst []byte, tag string, streamLen int) []byte {
	dst = append(dst, 0x93)
	dst = msgp.AppendString(dst, tag)
	dst = append(dst, 0xdb)
	return binary.BigEndian.AppendUint32(dst, uint32(streamLen))
}

// AppendForwardOption appends the option map: size (events), chunk (the ack id, as a
// str; omitted when empty) and compressed ("gzip" when the stream is gzipped; omitted
// otherwise).
func AppendForwardOption(dst []byte, size int, chunk []byte, compressed string) []byte {
	n := uint32(1)
	if len(chunk) > 0 {
		n++
	}
	if compressed != "" {
		n++
	}
	dst = msgp.AppendMapHeader(dst, n)
	dst = msgp.AppendString(dst, "size")
	dst = msgp.AppendInt(dst, size)
	if len(chunk) > 0 {
		dst = msgp.AppendString(dst, "chunk")
		dst = msgp.AppendStringFromBytes(dst, chunk)
	}
	if compressed != "" {
		dst = msgp.AppendString(dst, "compressed")
		dst = msgp.AppendString(dst, compressed)
	}
	return dst
}

// AppendPackedForward appends a whole PackedForward message.
func AppendPackedForward(dst []byte, tag string, entries []byte, count int, chunk []byte) []byte {
	dst = AppendPackedForwardHead(dst, tag, len(entries))
	dst = append(dst, entries...)
	return AppendForwardOption(dst, count, chunk, "")
}

// AppendCompressedPackedForward appends a CompressedPackedForward message whose stream
// is the already gzipped entries.
func AppendCompressedPackedForward(dst []byte, tag string, gz []byte, count int, chunk []byte) []byte {
	dst = AppendPackedForwardHead(dst, tag, len(gz))
	dst = append(dst, gz...)
	return AppendForwardOption(dst, count, chunk, "gzip")
}

// AppendForward appends a Forward-mode message [tag, [entries...], option].
func AppendForward(dst []byte, tag string, entries []byte, count int, chunk []byte) []byte {
	dst = append(dst, 0x93)
	dst = msgp.AppendString(dst, tag)
	dst = msgp.AppendArrayHeader(dst, uint32(count))
	dst = append(dst, entries...)
	return AppendForwardOption(dst, count, chunk, "")
}

// AppendMessage appends a Message-mode message [tag, time, record, option?]; time and
// record are raw msgpack. The option is written only with a chunk.
func AppendMessage(dst []byte, tag string, time, record []byte, chunk []byte) []byte {
	if len(chunk) > 0 {
		dst = append(dst, 0x94)
	} else {
		dst = append(dst, 0x93)
	}
	dst = msgp.AppendString(dst, tag)
	dst = append(dst, time...)
	dst = append(dst, record...)
	if len(chunk) > 0 {
		dst = msgp.AppendMapHeader(dst, 1)
		dst = msgp.AppendString(dst, "chunk")
		dst = msgp.AppendStringFromBytes(dst, chunk)
	}
	return dst
}

// AppendEntry appends one [time, record] entry; time and record are raw msgpack.
func AppendEntry(dst, time, record []byte) []byte {
	dst = append(dst, 0x92)
	dst = append(dst, time...)
	return append(dst, record...)
}

// AppendAck appends the ack reply {"ack": chunk}, the chunk echoed byte for byte as a
// msgpack str (fluent-bit rejects any other type).
func AppendAck(dst, chunk []byte) []byte {
	dst = append(dst, 0x81, 0xa3, 'a', 'c', 'k')
	return msgp.AppendStringFromBytes(dst, chunk)
}

// AppendAckJSON appends the ack reply for a JSON-framed client: {"ack":"<chunk>"}.
func AppendAckJSON(dst, chunk []byte) []byte {
	s, _ := json.Marshal(string(chunk))
	dst = append(dst, `{"ack":`...)
	dst = append(dst, s...)
	return append(dst, '}')
}

// ErrNotAck is returned by ParseAck for a message that is not {"ack": id}.
var ErrNotAck = errors.New("not an ack reply")

// ParseAck returns the chunk id of an ack reply. The id may be str or bin.
func ParseAck(b []byte) ([]byte, error) {
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, ErrNotAck
	}
	var id []byte
	for i := uint32(0); i < n; i++ {
		var k []byte
		k, rest, err = msgp.ReadStringZC(rest)
		if err != nil {
			return nil, ErrNotAck
		}
		if string(k) == "ack" {
			switch msgp.NextType(rest) {
			case msgp.StrType:
				id, rest, err = msgp.ReadStringZC(rest)
			case msgp.BinType:
				id, rest, err = msgp.ReadBytesZC(rest)
			default:
				return nil, ErrNotAck
			}
		} else {
			rest, err = msgp.Skip(rest)
		}
		if err != nil {
			return nil, ErrNotAck
		}
	}
	if id == nil {
		return nil, ErrNotAck
	}
	return id, nil
}

// EntriesIntTime rewrites entries with integer-second times, for upstreams that reject
// EventTime (fluentd <= 0.12). v1.5 [time, metadata] times become the integer.
func EntriesIntTime(dst, entries []byte) ([]byte, error) {
	rest := entries
	for len(rest) > 0 {
		_, body, err := msgp.ReadArrayHeaderBytes(rest)
		if err != nil {
			return nil, err
		}
		after, err := msgp.Skip(body)
		if err != nil {
			return nil, err
		}
		tm := body[:len(body)-len(after)]
		recEnd, err := msgp.Skip(after)
		if err != nil {
			return nil, err
		}
		rec := after[:len(after)-len(recEnd)]
		sec, _, ok := EventTimeOf(tm)
		if !ok {
			return nil, errors.New("entry time is not a time")
		}
		dst = append(dst, 0x92)
		dst = AppendIntTime(dst, sec)
		dst = append(dst, rec...)
		rest = recEnd
	}
	return dst, nil
}
