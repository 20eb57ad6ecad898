package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// The body bound follows the route matched: a non-streaming route whose path happens to end in
// /ndjson is bounded, and only a StreamIn route reads an unbounded body.
func TestBodyLimitFollowsTheMatchedRoute(t *testing.T) {
	e := NewEngine(nil)
	readAll := func(c *gin.Context) {
		n, err := io.Copy(io.Discard, c.Request.Body)
		if err != nil {
			Abort(c, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, err.Error())
			return
		}
		c.JSON(http.StatusOK, gin.H{"bytes": n})
	}
	e.PUT("/v1/environment/:key", readAll)
	e.POST("/v3/erp/updates/events/ndjson", StreamIn(), readAll)
	srv := &http.Server{Handler: e}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	big := strings.Repeat("x", MaxBodyBytes+1)
	for path, want := range map[string]int{"/v1/environment/ndjson": 413, "/v3/erp/updates/events/ndjson": 200} {
		method := "PUT"
		if strings.HasPrefix(path, "/v3") {
			method = "POST"
		}
		req, _ := http.NewRequest(method, "http://"+ln.Addr().String()+path, strings.NewReader(big))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s %s with %d bytes: %d, want %d", method, path, len(big), resp.StatusCode, want)
		}
	}
}

// A stream that makes progress outlives the server's total read and write timeouts: each line
// moves the idle deadline on. Here the server allows 1 s in all and the stream runs for 3 s.
func TestStreamsOutliveTheServerTimeoutsWhileTheyProgress(t *testing.T) {
	old := StreamIdleTimeout
	StreamIdleTimeout = time.Second
	defer func() { StreamIdleTimeout = old }()
	e := NewEngine(nil)
	e.POST("/echo", StreamIn(), func(c *gin.Context) {
		sc := bufio.NewScanner(c.Request.Body)
		for {
			StreamProgress(c)
			if !sc.Scan() {
				break
			}
			fmt.Fprintf(c.Writer, "got %s\n", sc.Text())
			c.Writer.Flush()
		}
	})
	srv := &http.Server{Handler: e, ReadTimeout: time.Second, WriteTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	pr, pw := io.Pipe()
	go func() {
		for i := range 12 {
			fmt.Fprintf(pw, "line %d\n", i)
			time.Sleep(250 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/echo", pr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		n++
	}
	if n != 12 {
		t.Fatalf("%d of 12 result lines before the stream ended (err %v)", n, sc.Err())
	}
}
