// yamux_peer is the independent yamux implementation the interop tests talk to: hashicorp's Go yamux
// (Debian's golang-github-hashicorp-yamux-dev, a 2019 snapshot), driven over TCP on 127.0.0.1.
//
// Build offline (the test does this into a temporary directory):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o yamux_peer tests/interop/go/yamux_peer.go
//
// Every line on stdout is one JSON object; logs and yamux's own messages go to stderr.
//
// Modes:
//
//	yamux_peer server
//	    Listens on 127.0.0.1:0 and prints {"event":"listening","port":N}. Accepts one TCP connection,
//	    runs yamux.Server on it and echoes every accepted stream until the peer's FIN, then closes it.
//	    Reads commands from stdin, one per line, and answers each with one JSON line:
//	      ping   -> {"event":"ping","rttMs":F}        (session.Ping against the peer)
//	      goaway -> {"event":"goaway"}               (session.GoAway; written to the conn when printed)
//	      stats  -> {"event":"stats","streamsEchoed":N,"bytesEchoed":N,"numStreams":N}
//	      quit or end of stdin -> closes the session and exits 0.
//	    Failures are reported as {"event":"<command>","error":"..."}.
//
//	yamux_peer client -port P [-streams N] [-bytes M] [-pings K]
//	    Dials 127.0.0.1:P, runs yamux.Client, opens N streams at once, writes M bytes of deterministic
//	    data to each while reading the echo, compares SHA-256 of sent and received bytes, closes the
//	    stream, then pings K times and prints one {"event":"result",...} line.
//
//	yamux_peer client-goaway -port P
//	    Dials, opens one stream, writes one byte and reads one byte back (the peer sends its GoAway
//	    before that echo, so the GoAway has been processed once the byte arrives), then calls
//	    OpenStream again and prints {"event":"goaway-result","openError":"...","remoteGoAway":bool}.
//
// The 2019 yamux has no half-close: Stream.Close sends FIN and afterwards Read reports EOF as soon as
// its buffer is empty. So the client reads the whole fixed-length echo before it closes a stream.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// emit writes one JSON object per line to stdout; a mutex keeps concurrent lines whole.
var emitLock sync.Mutex

func emit(v map[string]interface{}) {
	line, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "yamux_peer: cannot encode %v: %v\n", v, err)
		os.Exit(3)
	}
	emitLock.Lock()
	defer emitLock.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "yamux_peer: "+format+"\n", args...)
	os.Exit(2)
}

// config is yamux's default with logs on stderr and keepalive off, so only the pings we ask for
// cross the wire during a test.
func config() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.LogOutput = os.Stderr
	return c
}

// fillPattern writes stream-specific pseudo-random bytes (xorshift32), so data sent on one stream
// that arrives on another, or out of order, changes the hash.
func fillPattern(buf []byte, streamIndex int) {
	state := uint32(streamIndex+1)*0x9E3779B9 | 1
	for i := range buf {
		state ^= state << 13
		state ^= state >> 17
		state ^= state << 5
		buf[i] = byte(state)
	}
}

func runServer() {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("cannot listen on 127.0.0.1:0: %v", err)
	}
	emit(map[string]interface{}{"event": "listening", "port": listener.Addr().(*net.TCPAddr).Port})
	conn, err := listener.Accept()
	listener.Close()
	if err != nil {
		fail("accept failed: %v", err)
	}
	session, err := yamux.Server(conn, config())
	if err != nil {
		fail("yamux.Server failed: %v", err)
	}
	defer session.Close()

	var streamsEchoed int64
	var bytesEchoed int64
	go func() {
		for {
			stream, err := session.AcceptStream()
			if err != nil {
				return // session closed
			}
			go func(s *yamux.Stream) {
				n, err := io.Copy(s, s)
				atomic.AddInt64(&bytesEchoed, n)
				if err != nil {
					fmt.Fprintf(os.Stderr, "yamux_peer: echo on stream %d failed after %d bytes: %v\n",
						s.StreamID(), n, err)
				} else {
					atomic.AddInt64(&streamsEchoed, 1)
				}
				s.Close()
			}(stream)
		}
	}()

	commands := bufio.NewScanner(os.Stdin)
	for commands.Scan() {
		switch command := commands.Text(); command {
		case "ping":
			rtt, err := session.Ping()
			if err != nil {
				emit(map[string]interface{}{"event": "ping", "error": err.Error()})
			} else {
				emit(map[string]interface{}{"event": "ping", "rttMs": float64(rtt) / float64(time.Millisecond)})
			}
		case "goaway":
			if err := session.GoAway(); err != nil {
				emit(map[string]interface{}{"event": "goaway", "error": err.Error()})
			} else {
				emit(map[string]interface{}{"event": "goaway"})
			}
		case "stats":
			emit(map[string]interface{}{
				"event":         "stats",
				"streamsEchoed": atomic.LoadInt64(&streamsEchoed),
				"bytesEchoed":   atomic.LoadInt64(&bytesEchoed),
				"numStreams":    session.NumStreams(),
				"closed":        session.IsClosed(),
			})
		case "quit":
			return
		default:
			emit(map[string]interface{}{"event": "unknown", "error": "unknown command " + command})
		}
	}
}

// streamResult is what one client stream reports.
type streamResult struct {
	Index     int    `json:"index"`
	ID        uint32 `json:"id"`
	SentHash  string `json:"sentSha256"`
	EchoHash  string `json:"echoSha256"`
	EchoBytes int    `json:"echoBytes"`
	Error     string `json:"error,omitempty"`
}

func echoOneStream(session *yamux.Session, index int, size int) streamResult {
	result := streamResult{Index: index}
	stream, err := session.OpenStream()
	if err != nil {
		result.Error = "open: " + err.Error()
		return result
	}
	defer stream.Close()
	result.ID = stream.StreamID()

	sent := make([]byte, size)
	fillPattern(sent, index)
	sentHash := sha256.Sum256(sent)
	result.SentHash = hex.EncodeToString(sentHash[:])

	// Write and read at once: the echo is flow controlled, so writing everything first would stall
	// as soon as both directions' windows are full.
	writeErr := make(chan error, 1)
	go func() {
		_, err := stream.Write(sent)
		writeErr <- err
	}()
	echo := make([]byte, size)
	n, readErr := io.ReadFull(stream, echo)
	result.EchoBytes = n
	echoHash := sha256.Sum256(echo[:n])
	result.EchoHash = hex.EncodeToString(echoHash[:])
	if err := <-writeErr; err != nil {
		result.Error = "write: " + err.Error()
	} else if readErr != nil {
		result.Error = "read: " + readErr.Error()
	} else if !bytes.Equal(sent, echo) {
		result.Error = "echo differs from the data sent"
	}
	return result
}

func runClient(args []string) {
	flags := flag.NewFlagSet("client", flag.ExitOnError)
	port := flags.Int("port", 0, "TCP port on 127.0.0.1 to dial")
	streams := flags.Int("streams", 100, "streams opened at once")
	size := flags.Int("bytes", 1<<20, "bytes echoed per stream")
	pings := flags.Int("pings", 3, "pings after the echo")
	flags.Parse(args)
	if *port <= 0 {
		fail("client needs -port")
	}
	session := dialClient(*port)
	defer session.Close()

	started := time.Now()
	results := make([]streamResult, *streams)
	var wait sync.WaitGroup
	for i := 0; i < *streams; i++ {
		wait.Add(1)
		go func(index int) {
			defer wait.Done()
			results[index] = echoOneStream(session, index, *size)
		}(i)
	}
	wait.Wait()
	echoMs := float64(time.Since(started)) / float64(time.Millisecond)

	verified := 0
	failures := []streamResult{}
	for _, r := range results {
		if r.Error == "" && r.SentHash == r.EchoHash && r.EchoBytes == *size {
			verified++
		} else {
			failures = append(failures, r)
		}
	}
	rtts := []float64{}
	pingErrors := []string{}
	for i := 0; i < *pings; i++ {
		rtt, err := session.Ping()
		if err != nil {
			pingErrors = append(pingErrors, err.Error())
		} else {
			rtts = append(rtts, float64(rtt)/float64(time.Millisecond))
		}
	}
	emit(map[string]interface{}{
		"event":          "result",
		"streams":        *streams,
		"bytesPerStream": *size,
		"verified":       verified,
		"failures":       failures,
		"echoMs":         echoMs,
		"pingRttMs":      rtts,
		"pingErrors":     pingErrors,
	})
}

// dialClient connects to 127.0.0.1:port and starts a yamux client session on it, or exits.
func dialClient(port int) *yamux.Session {
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fail("dial 127.0.0.1:%d failed: %v", port, err)
	}
	session, err := yamux.Client(conn, config())
	if err != nil {
		fail("yamux.Client failed: %v", err)
	}
	return session
}

func runClientGoAway(args []string) {
	flags := flag.NewFlagSet("client-goaway", flag.ExitOnError)
	port := flags.Int("port", 0, "TCP port on 127.0.0.1 to dial")
	flags.Parse(args)
	if *port <= 0 {
		fail("client-goaway needs -port")
	}
	session := dialClient(*port)
	defer session.Close()

	probe, err := session.OpenStream()
	if err != nil {
		emit(map[string]interface{}{"event": "goaway-result", "error": "first open: " + err.Error()})
		return
	}
	probe.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := probe.Write([]byte{'G'}); err != nil {
		emit(map[string]interface{}{"event": "goaway-result", "error": "probe write: " + err.Error()})
		return
	}
	reply := make([]byte, 1)
	if _, err := io.ReadFull(probe, reply); err != nil {
		emit(map[string]interface{}{"event": "goaway-result", "error": "probe read: " + err.Error()})
		return
	}
	probe.Close()

	second, err := session.OpenStream()
	openError := ""
	if err != nil {
		openError = err.Error()
	} else {
		second.Close()
	}
	emit(map[string]interface{}{
		"event":        "goaway-result",
		"openError":    openError,
		"remoteGoAway": errors.Is(err, yamux.ErrRemoteGoAway),
	})
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: yamux_peer server | client -port P [-streams N -bytes M -pings K] | client-goaway -port P")
	}
	switch os.Args[1] {
	case "server":
		runServer()
	case "client":
		runClient(os.Args[2:])
	case "client-goaway":
		runClientGoAway(os.Args[2:])
	default:
		fail("unknown mode %q; use server, client or client-goaway", os.Args[1])
	}
}
