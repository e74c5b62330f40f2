package wire

import (
	"encoding/binary"
	"time"
)

// EventTimeExt is the msgpack extension type of Fluentd's EventTime.
const EventTimeExt = 0

// AppendEventTime appends t as an EventTime: fixext8 (d7 00), big-endian uint32
// seconds then uint32 nanoseconds.
func AppendEventTime(dst []byte, sec, nsec uint32) []byte {
	dst = append(dst, 0xd7, EventTimeExt)
	dst = binary.BigEndian.AppendUint32(dst, sec)
	return binary.BigEndian.AppendUint32(dst, nsec)
}

// AppendTime appends t as an EventTime.
func AppendTime(dst []byte, t time.Time) []byte {
	return AppendEventTime(dst, uint32(t.Unix()), uint32(t.Nanosecond()))
}

// AppendIntTime appends t as an integer of seconds, for receivers older than fluentd
// v0.14 that reject EventTime.
func AppendIntTime(dst []byte, sec int64) []byte {
	return appendInt(dst, sec)
}

func appendInt(dst []byte, i int64) []byte {
	switch {
	case i >= 0 && i < 128:
		return append(dst, byte(i))
	case i >= 0 && i <= 0xffffffff:
		dst = append(dst, 0xce)
		return binary.BigEndian.AppendUint32(dst, uint32(i))
	case i >= -32 && i < 0:
		return append(dst, byte(i))
	default:
		dst = append(dst, 0xd3)
		return binary.BigEndian.AppendUint64(dst, uint64(i))
	}
}
