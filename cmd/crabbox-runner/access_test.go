package main

import (
	"net"
	"testing"
)

// serve decides from the bound address, doctor from the configured one;
// both agree on what loopback-only is.
func TestLoopbackOnly(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:0": true, "127.9.9.9:0": true, "[::1]:0": true, "localhost:0": true,
		":0": false, "0.0.0.0:0": false, "[::]:0": false,
	} {
		if got := loopbackListen(listen); got != want {
			t.Errorf("loopbackListen(%q) = %v, want %v", listen, got, want)
		}
		l, err := net.Listen("tcp", listen)
		if err != nil {
			t.Logf("%s: %v (skipped)", listen, err)
			continue
		}
		if got := loopbackOnly(l.Addr()); got != want {
			t.Errorf("loopbackOnly(%s, listening on %q) = %v, want %v", l.Addr(), listen, got, want)
		}
		l.Close()
	}
	for _, listen := range []string{"10.0.0.3:8080", "crabbox.example.com:8080", "nonsense"} {
		if loopbackListen(listen) {
			t.Errorf("loopbackListen(%q) = true", listen)
		}
	}
}
