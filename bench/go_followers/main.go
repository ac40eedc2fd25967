// Command go_followers is scale_bench.py's fan-out client: it follows one kernel with many
// StreamOutputs streams at once, as goroutines of the Go client, so that the delay it reports
// is the gateway's and not that of a client with a thread per stream.
//
//	go_followers -target HOST:PORT -token T -kernel ID -after SEQ -followers N -text-file F
//
// Every follower reads the kernel's events after SEQ until the stream text it has is as long as
// the contents of F, then checks it is that text. It prints "open" on stdout once every stream
// is being read (events after SEQ are not lost to a late stream: they are read from the log),
// then, when every follower is done or -deadline passed, one JSON object:
//
//	{"followers": N, "got_every_line": K, "failures": [...], "delay_ms": {"n", "p50", "p90",
//	 "p99", "max"}, "last_done_unix_ms": T}
//
// where the delay is from each stream event's server time to its arrival here. Exit status 0
// when every follower got the whole text, 1 otherwise, 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"cellgate"
)

type summary struct {
	Followers       int                `json:"followers"`
	GotEveryLine    int                `json:"got_every_line"`
	Failures        []string           `json:"failures"`
	DelayMs         map[string]float64 `json:"delay_ms"`
	LastDoneUnixMs  float64            `json:"last_done_unix_ms"`
	Connections     int                `json:"connections"`
	DeadlineReached bool               `json:"deadline_reached"`
}

// percentile of sorted values, nearest rank; 0 when there are none (n says so).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if rank < 0 {
		rank = 0
	}
	return sorted[rank]
}

func unixMs(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }

func main() {
	os.Exit(run())
}

func run() int {
	target := flag.String("target", "", "cellgate server: HOST:PORT or unix:/path")
	token := flag.String("token", "", "bearer token")
	kernelID := flag.String("kernel", "", "the kernel to follow")
	after := flag.Int64("after", 0, "read the events after this seq")
	count := flag.Int("followers", 1000, "number of followers")
	perConn := flag.Int("per-connection", 100, "followers sharing one connection (HTTP/2)")
	textFile := flag.String("text-file", "", "file holding the stream text every follower must get")
	deadline := flag.Duration("deadline", 5*time.Minute, "give up after this long")
	flag.Parse()
	if *target == "" || *kernelID == "" || *textFile == "" || *count < 1 || *perConn < 1 {
		flag.Usage()
		return 2
	}
	want, err := os.ReadFile(*textFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_followers:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()

	var clients []*cellgate.Client
	for i := 0; i < (*count+*perConn-1) / *perConn; i++ {
		client, err := cellgate.Dial(ctx, *target, cellgate.WithToken(*token))
		if err != nil {
			fmt.Fprintln(os.Stderr, "go_followers:", err)
			return 2
		}
		defer client.Close()
		clients = append(clients, client)
	}

	var mu sync.Mutex
	delays := make([]float64, 0, *count*64)
	var failures []string
	var lastDone time.Time
	got := 0
	var wg sync.WaitGroup
	for i := 0; i < *count; i++ {
		stream := clients[i / *perConn].Kernel(*kernelID).StreamOutputs(ctx, *after, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stream.Close()
			var text strings.Builder
			var mine []float64
			for text.Len() < len(want) {
				event, err := stream.Next()
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("after %d of %d bytes: %v", text.Len(), len(want), err))
					mu.Unlock()
					return
				}
				piece := event.GetOutput().GetStream().GetText()
				if piece == "" {
					continue
				}
				arrived := time.Now()
				if at := event.GetTime(); at != nil {
					sent := time.Unix(at.GetSeconds(), int64(at.GetNanos()))
					mine = append(mine, float64(arrived.Sub(sent).Microseconds())/1000)
				}
				text.WriteString(piece)
			}
			done := time.Now()
			mu.Lock()
			defer mu.Unlock()
			delays = append(delays, mine...)
			if text.String() != string(want) {
				failures = append(failures, fmt.Sprintf("got %d bytes that differ from the %d expected", text.Len(), len(want)))
				return
			}
			got++
			if done.After(lastDone) {
				lastDone = done
			}
		}()
	}
	fmt.Println("open")

	wg.Wait()
	sort.Float64s(delays)
	out := summary{
		Followers:    *count,
		GotEveryLine: got,
		Failures:     failures,
		DelayMs: map[string]float64{
			"n": float64(len(delays)), "p50": percentile(delays, 50), "p90": percentile(delays, 90),
			"p99": percentile(delays, 99), "max": percentile(delays, 100),
		},
		LastDoneUnixMs:  unixMs(lastDone),
		Connections:     len(clients),
		DeadlineReached: ctx.Err() != nil,
	}
	if len(out.Failures) > 5 {
		out.Failures = out.Failures[:5]
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "go_followers:", err)
		return 1
	}
	if got != *count {
		return 1
	}
	return 0
}
