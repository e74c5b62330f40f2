package wire

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/tinylib/msgp/msgp"
)

// Helo is the server's greeting when security is on.
type Helo struct {
	Nonce     []byte // 16 random bytes
	Auth      []byte // user-auth salt; empty when user auth is off
	Keepalive bool
}

// Ping is the client's answer to HELO: always 6 elements on the wire.
type Ping struct {
	Hostname       []byte
	SharedKeySalt  []byte
	SharedKeyHex   []byte // hex(sha512(salt + hostname + nonce + shared_key))
	Username       []byte
	PasswordDigest []byte // hex(sha512(auth_salt + username + password)), or empty
}

// Pong is the server's verdict.
type Pong struct {
	OK       bool
	Reason   string
	Hostname []byte
	Digest   []byte // hex(sha512(salt + server_hostname + nonce + shared_key))
}

// SharedKeyDigest is hex(sha512(salt + hostname + nonce + key)) over the raw bytes, in
// lowercase, as both sides compute it.
func SharedKeyDigest(salt, hostname, nonce, key []byte) string {
	h := sha512.New()
	h.Write(salt)
	h.Write(hostname)
	h.Write(nonce)
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil))
}

// PasswordDigest is hex(sha512(authSalt + username + password)).
func PasswordDigest(authSalt, username, password []byte) string {
	h := sha512.New()
	h.Write(authSalt)
	h.Write(username)
	h.Write(password)
	return hex.EncodeToString(h.Sum(nil))
}

// AppendHelo encodes ["HELO", {"nonce": bin, "auth": bin|"", "keepalive": bool}].
func AppendHelo(dst []byte, h Helo) []byte {
	dst = append(dst, 0x92)
	dst = msgp.AppendString(dst, "HELO")
	dst = msgp.AppendMapHeader(dst, 3)
	dst = msgp.AppendString(dst, "nonce")
	dst = msgp.AppendBytes(dst, h.Nonce)
	dst = msgp.AppendString(dst, "auth")
	if len(h.Auth) == 0 {
		dst = msgp.AppendString(dst, "")
	} else {
		dst = msgp.AppendBytes(dst, h.Auth)
	}
	dst = msgp.AppendString(dst, "keepalive")
	return msgp.AppendBool(dst, h.Keepalive)
}

// AppendPing encodes the 6-element PING.
func AppendPing(dst []byte, p Ping) []byte {
	dst = append(dst, 0x96)
	dst = msgp.AppendString(dst, "PING")
	dst = msgp.AppendStringFromBytes(dst, p.Hostname)
	dst = msgp.AppendBytes(dst, p.SharedKeySalt)
	dst = msgp.AppendStringFromBytes(dst, p.SharedKeyHex)
	dst = msgp.AppendStringFromBytes(dst, p.Username)
	return msgp.AppendStringFromBytes(dst, p.PasswordDigest)
}

// AppendPong encodes ["PONG", ok, reason, hostname, digest].
func AppendPong(dst []byte, p Pong) []byte {
	dst = append(dst, 0x95)
	dst = msgp.AppendString(dst, "PONG")
	dst = msgp.AppendBool(dst, p.OK)
	dst = msgp.AppendString(dst, p.Reason)
	dst = msgp.AppendStringFromBytes(dst, p.Hostname)
	return msgp.AppendStringFromBytes(dst, p.Digest)
}

func hsErr(off int, format string, args ...any) error {
	return &DecodeError{Offset: int64(off), Err: ErrHandshake, Detail: fmt.Sprintf(format, args...)}
}

// hsRead reads the next handshake message, returning its stream offset. A read error
// becomes a *DecodeError wrapping both ErrHandshake and the cause.
func hsRead(dec *Decoder, what string) ([]byte, int64, error) {
	off := dec.Offset()
	raw, err := dec.NextRaw()
	if err == nil {
		return raw, off, nil
	}
	var de *DecodeError
	if errors.As(err, &de) {
		return nil, off, &DecodeError{Offset: de.Offset, Err: fmt.Errorf("%w: %w", ErrHandshake, de.Err), Detail: "reading " + what + ": " + de.Detail}
	}
	return nil, off, &DecodeError{Offset: off, Err: fmt.Errorf("%w: %w", ErrHandshake, err), Detail: "reading " + what}
}

// shift moves the offset of a byte-level parse error to the stream.
func shift(err error, base int64) error {
	if de, ok := err.(*DecodeError); ok {
		de.Offset += base
	}
	return err
}

func authErr(off int64, detail string) error {
	return &DecodeError{Offset: off, Err: fmt.Errorf("%w: %w", ErrHandshake, ErrAuth), Detail: detail}
}

// readTextOrBin reads a str or bin (salts may be either; never assume text).
func readTextOrBin(b []byte) ([]byte, []byte, error) {
	switch msgp.NextType(b) {
	case msgp.StrType:
		return msgp.ReadStringZC(b)
	case msgp.BinType:
		return msgp.ReadBytesZC(b)
	}
	return nil, b, fmt.Errorf("got %s, want a string", typeName(b))
}

func readKind(b []byte, want string, minN, maxN uint32) (uint32, []byte, error) {
	n, rest, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return 0, nil, hsErr(0, "expected %s, got %s", want, typeName(b))
	}
	if n < minN || n > maxN {
		return 0, nil, hsErr(0, "%s has %d elements", want, n)
	}
	at := len(b) - len(rest)
	kind, rest, err := readTextOrBin(rest)
	if err != nil || string(kind) != want {
		return 0, nil, hsErr(at, "expected %s, got %q", want, kind)
	}
	return n, rest, nil
}

// ParseHelo decodes a HELO. The slices in the result point into b. Errors are
// *DecodeError with the offset in b.
func ParseHelo(b []byte) (Helo, error) {
	var h Helo
	at := func(r []byte) int { return len(b) - len(r) }
	_, rest, err := readKind(b, "HELO", 2, 2)
	if err != nil {
		return h, err
	}
	n, r2, err := msgp.ReadMapHeaderBytes(rest)
	if err != nil {
		return h, hsErr(at(rest), "HELO options are %s, want a map", typeName(rest))
	}
	rest = r2
	for i := uint32(0); i < n; i++ {
		var k []byte
		kStart := rest
		if k, rest, err = readTextOrBin(rest); err != nil {
			return h, hsErr(at(kStart), "HELO option key: %v", err)
		}
		vStart := rest
		switch string(k) {
		case "nonce":
			h.Nonce, rest, err = readTextOrBin(rest)
		case "auth":
			h.Auth, rest, err = readTextOrBin(rest)
		case "keepalive":
			h.Keepalive, rest, err = msgp.ReadBoolBytes(rest)
		default:
			rest, err = msgp.Skip(rest)
		}
		if err != nil {
			return h, hsErr(at(vStart), "HELO option %s: %v", k, err)
		}
	}
	if len(h.Nonce) == 0 {
		return h, hsErr(0, "HELO without nonce")
	}
	return h, nil
}

// ParsePing decodes a PING. The slices in the result point into b. Errors are
// *DecodeError with the offset in b.
func ParsePing(b []byte) (Ping, error) {
	var p Ping
	_, rest, err := readKind(b, "PING", 6, 6)
	if err != nil {
		return p, err
	}
	fields := [...]*[]byte{&p.Hostname, &p.SharedKeySalt, &p.SharedKeyHex, &p.Username, &p.PasswordDigest}
	names := [...]string{"hostname", "shared_key_salt", "shared_key_hexdigest", "username", "password_digest"}
	for i, f := range fields {
		start := rest
		if *f, rest, err = readTextOrBin(rest); err != nil {
			return p, hsErr(len(b)-len(start), "PING %s: %v", names[i], err)
		}
	}
	return p, nil
}

// ParsePong decodes a PONG. The slices in the result point into b. Errors are
// *DecodeError with the offset in b.
func ParsePong(b []byte) (Pong, error) {
	var p Pong
	at := func(r []byte) int { return len(b) - len(r) }
	_, rest, err := readKind(b, "PONG", 5, 5)
	if err != nil {
		return p, err
	}
	start := rest
	if p.OK, rest, err = msgp.ReadBoolBytes(rest); err != nil {
		return p, hsErr(at(start), "PONG auth result: %v", err)
	}
	var reason []byte
	start = rest
	if reason, rest, err = readTextOrBin(rest); err != nil {
		return p, hsErr(at(start), "PONG reason: %v", err)
	}
	p.Reason = string(reason)
	start = rest
	if p.Hostname, rest, err = readTextOrBin(rest); err != nil {
		return p, hsErr(at(start), "PONG hostname: %v", err)
	}
	start = rest
	if p.Digest, _, err = readTextOrBin(rest); err != nil {
		return p, hsErr(at(start), "PONG digest: %v", err)
	}
	return p, nil
}

// ServerAuth configures the server side of the handshake.
type ServerAuth struct {
	Hostname  string
	SharedKey string
	// Users maps username to password; when non-empty, clients must authenticate.
	Users map[string]string
	// Rand is the nonce source (crypto/rand when nil).
	Rand io.Reader
}

// ClientAuth configures the client side.
type ClientAuth struct {
	Hostname  string
	SharedKey string
	Username  string
	Password  string
	Rand      io.Reader
}

// ErrAuth marks a handshake the peer refused or that failed verification.
var ErrAuth = errors.New("authentication failed")

// ServerHandshake runs HELO → PING → PONG on a connection. It returns the client's
// hostname, or an error wrapping ErrHandshake (and ErrAuth when the credentials were
// wrong; the client has then been told why). The caller bounds it in time with a
// connection deadline.
func ServerHandshake(dec *Decoder, w io.Writer, a ServerAuth) (string, error) {
	rnd := a.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	nonce := make([]byte, 16)
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return "", err
	}
	var authSalt []byte
	if len(a.Users) > 0 {
		authSalt = make([]byte, 16)
		if _, err := io.ReadFull(rnd, authSalt); err != nil {
			return "", err
		}
	}
	if _, err := w.Write(AppendHelo(nil, Helo{Nonce: nonce, Auth: authSalt, Keepalive: true})); err != nil {
		return "", fmt.Errorf("write HELO: %w", err)
	}
	raw, base, err := hsRead(dec, "PING")
	if err != nil {
		return "", err
	}
	ping, err := ParsePing(raw)
	if err != nil {
		return "", shift(err, base)
	}
	refuse := func(reason string) (string, error) {
		_, _ = w.Write(AppendPong(nil, Pong{OK: false, Reason: reason}))
		return string(ping.Hostname), authErr(base, reason)
	}
	if string(ping.Hostname) == a.Hostname {
		return refuse("same hostname between input and output: invalid configuration")
	}
	want := SharedKeyDigest(ping.SharedKeySalt, ping.Hostname, nonce, []byte(a.SharedKey))
	if subtle.ConstantTimeCompare([]byte(want), ping.SharedKeyHex) != 1 {
		return refuse("shared_key mismatch")
	}
	if len(a.Users) > 0 {
		pw, ok := a.Users[string(ping.Username)]
		ok = ok && subtle.ConstantTimeCompare([]byte(PasswordDigest(authSalt, ping.Username, []byte(pw))), ping.PasswordDigest) == 1
		if !ok {
			return refuse("username/password mismatch")
		}
	}
	salt := ping.SharedKeySalt
	digest := SharedKeyDigest(salt, []byte(a.Hostname), nonce, []byte(a.SharedKey))
	if _, err := w.Write(AppendPong(nil, Pong{OK: true, Hostname: []byte(a.Hostname), Digest: []byte(digest)})); err != nil {
		return "", fmt.Errorf("write PONG: %w", err)
	}
	return string(ping.Hostname), nil
}

// ClientHandshake answers a server's HELO and verifies its PONG: the digest must prove
// the server knows the shared key, and its hostname must differ from ours.
func ClientHandshake(dec *Decoder, w io.Writer, a ClientAuth) (string, error) {
	raw, base, err := hsRead(dec, "HELO")
	if err != nil {
		return "", err
	}
	helo, err := ParseHelo(raw)
	if err != nil {
		return "", shift(err, base)
	}
	// helo's slices point into the decoder's buffer, which reading the PONG reuses.
	nonce := bytes.Clone(helo.Nonce)
	authSalt := bytes.Clone(helo.Auth)
	rnd := a.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return "", err
	}
	p := Ping{
		Hostname:      []byte(a.Hostname),
		SharedKeySalt: salt,
		SharedKeyHex:  []byte(SharedKeyDigest(salt, []byte(a.Hostname), nonce, []byte(a.SharedKey))),
	}
	if len(authSalt) > 0 {
		p.Username = []byte(a.Username)
		p.PasswordDigest = []byte(PasswordDigest(authSalt, []byte(a.Username), []byte(a.Password)))
	}
	if _, err := w.Write(AppendPing(nil, p)); err != nil {
		return "", fmt.Errorf("write PING: %w", err)
	}
	raw, base, err = hsRead(dec, "PONG")
	if err != nil {
		return "", err
	}
	pong, err := ParsePong(raw)
	if err != nil {
		return "", shift(err, base)
	}
	if !pong.OK {
		return "", authErr(base, "server refused: "+pong.Reason)
	}
	if string(pong.Hostname) == a.Hostname {
		return "", &DecodeError{Offset: base, Err: ErrHandshake, Detail: fmt.Sprintf("server hostname %q equals ours: a forwarding loop", pong.Hostname)}
	}
	want := SharedKeyDigest(salt, pong.Hostname, nonce, []byte(a.SharedKey))
	if subtle.ConstantTimeCompare([]byte(want), pong.Digest) != 1 {
		return "", authErr(base, "server's shared_key digest does not match")
	}
	return string(pong.Hostname), nil
}
