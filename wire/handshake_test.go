package wire

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

var (
	testNonce = bytes.Repeat([]byte{0xa5}, 16)
	testSalt  = []byte("0123456789abcdef")
)

// digestVector computes hex(sha512(parts...)) independently of the package.
func digestVector(parts ...string) string {
	sum := sha512.Sum512([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

func TestHandshakeDigests(t *testing.T) {
	// Known vector, fixed here so a change of algorithm shows up: sha512 of
	// "salt" + "client.example" + 16×0xa5 + "secret".
	want := digestVector("salt", "client.example", string(testNonce), "secret")
	got := SharedKeyDigest([]byte("salt"), []byte("client.example"), testNonce, []byte("secret"))
	if got != want || len(got) != 128 || strings.ToLower(got) != got {
		t.Fatalf("SharedKeyDigest = %s, want %s", got, want)
	}
	// Salts are raw bytes, not text.
	bin := []byte{0x00, 0xff, 0x80}
	if SharedKeyDigest(bin, []byte("h"), testNonce, []byte("k")) != digestVector(string(bin), "h", string(testNonce), "k") {
		t.Error("binary salt")
	}
	if got := PasswordDigest([]byte("asalt"), []byte("alice"), []byte("pw")); got != digestVector("asalt", "alice", "pw") {
		t.Errorf("PasswordDigest = %s", got)
	}
	// A fixed vector computed once with sha512sum, to pin the concatenation order.
	// printf 'abc' | sha512sum
	if got := SharedKeyDigest([]byte("a"), []byte("b"), nil, []byte("c")); got !=
		"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f" {
		t.Errorf("sha512(abc) = %s", got)
	}
}

func TestHandshakeMessagesByteExact(t *testing.T) {
	helo := AppendHelo(nil, Helo{Nonce: testNonce, Keepalive: true})
	wantHelo := cat(hx("92 a448454c4f 83 a56e6f6e6365 c410"), testNonce, hx("a461757468 a0 a96b656570616c697665 c3"))
	if !bytes.Equal(helo, wantHelo) {
		t.Errorf("HELO\n got % x\nwant % x", helo, wantHelo)
	}
	heloAuth := AppendHelo(nil, Helo{Nonce: testNonce, Auth: testSalt})
	wantHeloAuth := cat(hx("92 a448454c4f 83 a56e6f6e6365 c410"), testNonce, hx("a461757468 c410"), testSalt, hx("a96b656570616c697665 c2"))
	if !bytes.Equal(heloAuth, wantHeloAuth) {
		t.Errorf("HELO with auth\n got % x\nwant % x", heloAuth, wantHeloAuth)
	}
	digest := SharedKeyDigest(testSalt, []byte("client"), testNonce, []byte("secret"))
	ping := AppendPing(nil, Ping{Hostname: []byte("client"), SharedKeySalt: testSalt, SharedKeyHex: []byte(digest)})
	wantPing := cat(hx("96 a450494e47 a6636c69656e74 c410"), testSalt, hx("d980"), []byte(digest), hx("a0 a0"))
	if !bytes.Equal(ping, wantPing) {
		t.Errorf("PING\n got % x\nwant % x", ping, wantPing)
	}
	pong := AppendPong(nil, Pong{OK: true, Hostname: []byte("server"), Digest: []byte(digest)})
	wantPong := cat(hx("95 a4504f4e47 c3 a0 a6736572766572 d980"), []byte(digest))
	if !bytes.Equal(pong, wantPong) {
		t.Errorf("PONG\n got % x\nwant % x", pong, wantPong)
	}
	refused := AppendPong(nil, Pong{Reason: "shared_key mismatch"})
	if want := cat(hx("95 a4504f4e47 c2 b3"), []byte("shared_key mismatch"), hx("a0 a0")); !bytes.Equal(refused, want) {
		t.Errorf("refusing PONG\n got % x\nwant % x", refused, want)
	}

	// And back.
	h, err := ParseHelo(heloAuth)
	if err != nil || !bytes.Equal(h.Nonce, testNonce) || !bytes.Equal(h.Auth, testSalt) || h.Keepalive {
		t.Errorf("ParseHelo = %+v, %v", h, err)
	}
	p, err := ParsePing(ping)
	if err != nil || string(p.Hostname) != "client" || !bytes.Equal(p.SharedKeySalt, testSalt) || string(p.SharedKeyHex) != digest ||
		len(p.Username) != 0 || len(p.PasswordDigest) != 0 {
		t.Errorf("ParsePing = %+v, %v", p, err)
	}
	po, err := ParsePong(refused)
	if err != nil || po.OK || po.Reason != "shared_key mismatch" {
		t.Errorf("ParsePong = %+v, %v", po, err)
	}
}

// Messages as fluentd writes them: str nonce/salt, extra HELO keys, str keys as bin.
func TestParseHandshakeLenient(t *testing.T) {
	helo := cat(hx("92 a448454c4f 84 a56e6f6e6365 b0"), testNonce, hx("a461757468 a0 a96b656570616c697665 c3 a3666f6f 920102"))
	h, err := ParseHelo(helo)
	if err != nil || !bytes.Equal(h.Nonce, testNonce) || len(h.Auth) != 0 || !h.Keepalive {
		t.Fatalf("ParseHelo = %+v, %v", h, err)
	}
	ping := cat(hx("96 c404 50494e47 a1 68 b0"), testSalt, hx("a164 a5616c696365 a178"))
	p, err := ParsePing(ping)
	if err != nil || string(p.Username) != "alice" || string(p.PasswordDigest) != "x" {
		t.Fatalf("ParsePing = %+v, %v", p, err)
	}
}

func TestParseHandshakeErrors(t *testing.T) {
	cases := []struct {
		name  string
		parse func([]byte) error
		in    []byte
		off   int64
	}{
		{"HELO not an array", parseHelo, hx("81 a161 01"), 0},
		{"HELO wrong kind", parseHelo, hx("92 a450494e47 80"), 1},
		{"HELO kind not a string", parseHelo, hx("92 01 80"), 1},
		{"HELO wrong length", parseHelo, hx("93 a448454c4f 80 80"), 0},
		{"HELO options not a map", parseHelo, hx("92 a448454c4f 90"), 6},
		{"HELO key not a string", parseHelo, hx("92 a448454c4f 81 01 01"), 7},
		{"HELO nonce not bytes", parseHelo, hx("92 a448454c4f 81 a56e6f6e6365 01"), 13},
		{"HELO keepalive not bool", parseHelo, hx("92 a448454c4f 82 a56e6f6e6365 a178 a96b656570616c697665 01"), 25},
		{"HELO without nonce", parseHelo, hx("92 a448454c4f 80"), 0},
		{"HELO short map", parseHelo, hx("92 a448454c4f 81"), 7},
		{"PING of 4", parsePing, hx("94 a450494e47 a0 a0 a0"), 0},
		{"PING salt an integer", parsePing, hx("96 a450494e47 a168 01 a0 a0 a0"), 8},
		{"PING truncated", parsePing, hx("96 a450494e47 a168 a0 a0 a0"), 11},
		{"PONG of 4", parsePong, hx("94 a4504f4e47 c3 a0 a0"), 0},
		{"PONG ok not bool", parsePong, hx("95 a4504f4e47 01 a0 a0 a0"), 6},
		{"PONG reason an integer", parsePong, hx("95 a4504f4e47 c2 01 a0 a0"), 7},
		{"PONG hostname nil", parsePong, hx("95 a4504f4e47 c2 a0 c0 a0"), 8},
		{"PONG digest missing", parsePong, hx("95 a4504f4e47 c2 a0 a0"), 9},
		{"empty", parsePong, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse(tc.in)
			wantDecodeError(t, err, ErrHandshake, tc.off)
			if errors.Is(err, ErrAuth) {
				t.Error("a malformed message is not an auth failure")
			}
		})
	}
}

func parseHelo(b []byte) error { _, err := ParseHelo(b); return err }
func parsePing(b []byte) error { _, err := ParsePing(b); return err }
func parsePong(b []byte) error { _, err := ParsePong(b); return err }

type hsResult struct {
	peer string
	err  error
}

// runHandshake runs both sides over conns from mk and returns both results. After a
// successful handshake the client sends a frame that the server decodes with the same
// decoder.
func runHandshake(t *testing.T, mk func() (net.Conn, net.Conn), s ServerAuth, c ClientAuth) (srv, cli hsResult) {
	t.Helper()
	sc, cc := mk()
	defer sc.Close()
	defer cc.Close()
	deadline := time.Now().Add(5 * time.Second)
	_ = sc.SetDeadline(deadline)
	_ = cc.SetDeadline(deadline)
	done := make(chan hsResult, 1)
	go func() {
		dec := NewDecoder(sc, Limits{MaxFrameBytes: 4096})
		defer dec.Close()
		peer, err := ServerHandshake(dec, sc, s)
		if err == nil {
			var f Frame
			if err := dec.Next(&f); err != nil || string(f.Tag) != "after.handshake" {
				t.Errorf("frame after the handshake: %v %q", err, f.Tag)
			}
		}
		sc.Close() // a refusing server closes
		done <- hsResult{peer, err}
	}()
	dec := NewDecoder(cc, Limits{MaxFrameBytes: 4096})
	defer dec.Close()
	peer, err := ClientHandshake(dec, cc, c)
	if err == nil {
		if _, err := cc.Write(AppendMessage(nil, "after.handshake", hx("01"), hx("80"), nil)); err != nil {
			t.Error(err)
		}
	}
	cli = hsResult{peer, err}
	cc.Close()
	return <-done, cli
}

func pipe() (net.Conn, net.Conn) { return net.Pipe() }

func tcpPair(t *testing.T) func() (net.Conn, net.Conn) {
	return func() (net.Conn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return sc, cc
	}
}

func TestHandshake(t *testing.T) {
	users := map[string]string{"alice": "pw1", "bob": "pw2"}
	cases := []struct {
		name     string
		s        ServerAuth
		c        ClientAuth
		srvAuth  bool   // server error wraps ErrAuth
		cliErr   string // substring of the client's error ("" = success)
		cliAuth  bool
		noSrvErr bool // the server sees only the client hanging up
	}{
		{name: "shared key", s: ServerAuth{Hostname: "server", SharedKey: "k"}, c: ClientAuth{Hostname: "client", SharedKey: "k"}},
		{name: "shared key and user", s: ServerAuth{Hostname: "server", SharedKey: "k", Users: users},
			c: ClientAuth{Hostname: "client", SharedKey: "k", Username: "bob", Password: "pw2"}},
		{name: "wrong shared key", s: ServerAuth{Hostname: "server", SharedKey: "k"}, c: ClientAuth{Hostname: "client", SharedKey: "x"},
			srvAuth: true, cliErr: "server refused: shared_key mismatch", cliAuth: true},
		{name: "wrong password", s: ServerAuth{Hostname: "server", SharedKey: "k", Users: users},
			c:       ClientAuth{Hostname: "client", SharedKey: "k", Username: "alice", Password: "pw2"},
			srvAuth: true, cliErr: "username/password mismatch", cliAuth: true},
		{name: "unknown user", s: ServerAuth{Hostname: "server", SharedKey: "k", Users: users},
			c:       ClientAuth{Hostname: "client", SharedKey: "k", Username: "eve"},
			srvAuth: true, cliErr: "username/password mismatch", cliAuth: true},
		{name: "same hostname", s: ServerAuth{Hostname: "same", SharedKey: "k"}, c: ClientAuth{Hostname: "same", SharedKey: "k"},
			srvAuth: true, cliErr: "same hostname", cliAuth: true},
	}
	for _, tc := range cases {
		for name, mk := range map[string]func() (net.Conn, net.Conn){"pipe": pipe, "tcp": tcpPair(t)} {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				srv, cli := runHandshake(t, mk, tc.s, tc.c)
				if tc.cliErr == "" {
					if srv.err != nil || cli.err != nil || srv.peer != tc.c.Hostname || cli.peer != tc.s.Hostname {
						t.Fatalf("server %+v, client %+v", srv, cli)
					}
					return
				}
				wantDecodeError(t, srv.err, ErrHandshake, 0)
				if errors.Is(srv.err, ErrAuth) != tc.srvAuth {
					t.Errorf("server error %v: ErrAuth %v, want %v", srv.err, !tc.srvAuth, tc.srvAuth)
				}
				de := wantDecodeError(t, cli.err, ErrHandshake, int64(len(AppendHelo(nil, Helo{Nonce: testNonce, Auth: authSalt(tc.s), Keepalive: true}))))
				if !strings.Contains(de.Error(), tc.cliErr) || errors.Is(cli.err, ErrAuth) != tc.cliAuth {
					t.Errorf("client error %v, want %q (ErrAuth %v)", cli.err, tc.cliErr, tc.cliAuth)
				}
				if Reason(cli.err) != "handshake" {
					t.Errorf("Reason = %s", Reason(cli.err))
				}
			})
		}
	}
}

func authSalt(s ServerAuth) []byte {
	if len(s.Users) > 0 {
		return testSalt
	}
	return nil
}

// The server's nonce comes from ServerAuth.Rand, the salt from ClientAuth.Rand, and the
// digests are the ones fluentd computes.
func TestHandshakeWire(t *testing.T) {
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	done := make(chan error, 1)
	go func() {
		dec := NewDecoder(sc, Limits{})
		defer dec.Close()
		_, err := ServerHandshake(dec, sc, ServerAuth{Hostname: "server", SharedKey: "secret", Rand: bytes.NewReader(testNonce)})
		done <- err
	}()
	dec := NewDecoder(cc, Limits{})
	defer dec.Close()
	raw, err := dec.NextRaw()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, AppendHelo(nil, Helo{Nonce: testNonce, Keepalive: true})) {
		t.Fatalf("HELO % x", raw)
	}
	// PING exactly as fluentd's out_forward builds it.
	ping := AppendPing(nil, Ping{Hostname: []byte("client"), SharedKeySalt: testSalt,
		SharedKeyHex: []byte(digestVector(string(testSalt), "client", string(testNonce), "secret"))})
	if _, err := cc.Write(ping); err != nil {
		t.Fatal(err)
	}
	raw, err = dec.NextRaw()
	if err != nil {
		t.Fatal(err)
	}
	want := AppendPong(nil, Pong{OK: true, Hostname: []byte("server"), Digest: []byte(digestVector(string(testSalt), "server", string(testNonce), "secret"))})
	if !bytes.Equal(raw, want) {
		t.Fatalf("PONG\n got % x\nwant % x", raw, want)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// fakeServer sends HELO, reads the PING and answers with pong(ping).
func fakeServer(t *testing.T, pong func(Ping) []byte) error {
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	go func() {
		dec := NewDecoder(sc, Limits{})
		defer dec.Close()
		if _, err := sc.Write(AppendHelo(nil, Helo{Nonce: testNonce})); err != nil {
			return
		}
		raw, err := dec.NextRaw()
		if err != nil {
			return
		}
		p, err := ParsePing(raw)
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = sc.Write(pong(p))
	}()
	dec := NewDecoder(cc, Limits{})
	defer dec.Close()
	_, err := ClientHandshake(dec, cc, ClientAuth{Hostname: "client", SharedKey: "secret", Rand: bytes.NewReader(testSalt)})
	return err
}

func TestClientVerifiesPong(t *testing.T) {
	// A server that does not know the key cannot produce the digest.
	err := fakeServer(t, func(p Ping) []byte {
		return AppendPong(nil, Pong{OK: true, Hostname: []byte("server"), Digest: []byte(SharedKeyDigest(p.SharedKeySalt, []byte("server"), testNonce, []byte("guess")))})
	})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "digest does not match") {
		t.Errorf("bad digest: %v", err)
	}
	// A digest for another hostname than the one claimed.
	err = fakeServer(t, func(p Ping) []byte {
		return AppendPong(nil, Pong{OK: true, Hostname: []byte("server"), Digest: []byte(SharedKeyDigest(p.SharedKeySalt, []byte("other"), testNonce, []byte("secret")))})
	})
	if !errors.Is(err, ErrAuth) {
		t.Errorf("digest for another host: %v", err)
	}
	// Our own hostname back: a forwarding loop.
	err = fakeServer(t, func(p Ping) []byte {
		return AppendPong(nil, Pong{OK: true, Hostname: []byte("client"), Digest: []byte(SharedKeyDigest(p.SharedKeySalt, []byte("client"), testNonce, []byte("secret")))})
	})
	wantDecodeError(t, err, ErrHandshake, -1)
	if !strings.Contains(err.Error(), "equals ours") {
		t.Errorf("same hostname: %v", err)
	}
	// The correct answer passes (and the client used our salt).
	err = fakeServer(t, func(p Ping) []byte {
		if !bytes.Equal(p.SharedKeySalt, testSalt) {
			t.Errorf("salt % x", p.SharedKeySalt)
		}
		return AppendPong(nil, Pong{OK: true, Hostname: []byte("server"), Digest: []byte(SharedKeyDigest(p.SharedKeySalt, []byte("server"), testNonce, []byte("secret")))})
	})
	if err != nil {
		t.Errorf("good PONG: %v", err)
	}
	// Garbage instead of a PONG: a precise error at the PONG's stream offset.
	err = fakeServer(t, func(Ping) []byte { return hx("92 a3616263 01") })
	wantDecodeError(t, err, ErrHandshake, int64(len(AppendHelo(nil, Helo{Nonce: testNonce}))))
}

func TestHandshakeReadErrors(t *testing.T) {
	// The client hangs up before PING.
	sc, cc := net.Pipe()
	go func() {
		dec := NewDecoder(cc, Limits{})
		defer dec.Close()
		_, _ = dec.NextRaw()
		cc.Close()
	}()
	dec := NewDecoder(sc, Limits{})
	_, err := ServerHandshake(dec, sc, ServerAuth{Hostname: "s", SharedKey: "k"})
	sc.Close()
	wantDecodeError(t, err, ErrHandshake, 0)
	if !errors.Is(err, io.EOF) {
		t.Errorf("err %v does not wrap io.EOF", err)
	}
	// An oversized PING header fails at once.
	var out bytes.Buffer
	dec = NewDecoder(&thenErr{data: hx("96 a450494e47 dbffffffff"), err: errWaited}, Limits{})
	_, err = ServerHandshake(dec, &out, ServerAuth{Hostname: "s", SharedKey: "k"})
	wantDecodeError(t, err, ErrFrameTooLarge, 6)
	if !errors.Is(err, ErrHandshake) {
		t.Errorf("%v does not wrap ErrHandshake", err)
	}
	// A PING with the wrong shape.
	dec = NewDecoder(bytes.NewReader(hx("93 a450494e47 a0 a0")), Limits{})
	_, err = ServerHandshake(dec, &out, ServerAuth{Hostname: "s", SharedKey: "k"})
	wantDecodeError(t, err, ErrHandshake, 0)
	// The client reads EOF instead of HELO (a server without security).
	dec = NewDecoder(bytes.NewReader(nil), Limits{})
	_, err = ClientHandshake(dec, &out, ClientAuth{Hostname: "c", SharedKey: "k"})
	if !errors.Is(err, ErrHandshake) || !errors.Is(err, io.EOF) {
		t.Errorf("client without HELO: %v", err)
	}
	// Rand failures are returned.
	_, err = ServerHandshake(NewDecoder(bytes.NewReader(nil), Limits{}), &out, ServerAuth{Rand: bytes.NewReader(nil)})
	if err == nil {
		t.Error("server with an empty Rand")
	}
}
