package cellgate

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"sync/atomic"
	"time"

	cellgatev1 "cellgate/v1"

	"google.golang.org/grpc/codes"
)

// EventStream is a resumable StreamOutputs: Next returns the kernel's events in seq order. When
// the stream breaks with UNAVAILABLE (connection lost, server draining) or RESOURCE_EXHAUSTED
// (the server cut off a reader that fell behind), Next reopens it with after_seq = the last seq
// it returned, after a backoff, so the caller sees every event once, in order, with no gap (see
// WithReconnect for the bounds). If the events after that seq were evicted meanwhile, Next
// returns an *Error with code OUT_OF_RANGE (IsOutOfRange): events were lost; resync from
// Kernel.Notebook and open a new stream from its LastSeq.
//
// Next is not safe for concurrent use; LastSeq, Reconnects and Close may be called from any
// goroutine. Cancel the context given to StreamOutputs, or call Close, to stop the stream.
type EventStream struct {
	ctx    context.Context
	stop   context.CancelFunc
	k      *Kernel
	follow bool
	cfg    streamConfig

	lastSeq    int64 // atomic
	reconnects int64 // atomic
	filtered   bool

	stream   cellgatev1.KernelGateway_StreamOutputsClient
	cancel   context.CancelFunc
	failures int   // reconnections in a row without an event
	err      error // sticky: once set, Next returns it
}

func newEventStream(ctx context.Context, k *Kernel, afterSeq int64, follow bool, cfg streamConfig) *EventStream {
	ctx, stop := context.WithCancel(ctx)
	return &EventStream{
		ctx: ctx, stop: stop, k: k, follow: follow, cfg: cfg,
		lastSeq:  afterSeq,
		filtered: cfg.cellID != "" || cfg.executionID != "",
	}
}

// LastSeq returns the seq of the last event Next returned (the afterSeq given to StreamOutputs
// before the first one). Pass it to StreamOutputs to continue elsewhere.
func (s *EventStream) LastSeq() int64 { return atomic.LoadInt64(&s.lastSeq) }

// Reconnects returns how many times Next tried to reopen the stream after UNAVAILABLE or
// RESOURCE_EXHAUSTED.
func (s *EventStream) Reconnects() int { return int(atomic.LoadInt64(&s.reconnects)) }

// Close ends the stream and releases its resources; a Next blocked in another goroutine, and
// every later one, returns a CANCELLED error (or the error or io.EOF it had already returned).
func (s *EventStream) Close() { s.stop() }

func (s *EventStream) closeStream() {
	if s.cancel != nil {
		s.cancel()
	}
	s.stream, s.cancel = nil, nil
}

// Next returns the next event. It returns io.EOF when the stream ended normally: without follow,
// after the last retained event; with follow, after the kernel was shut down. Any other error is
// an *Error and is final (every later call returns it).
func (s *EventStream) Next() (*cellgatev1.OutputEvent, error) {
	for s.err == nil {
		if s.stream == nil {
			if err := s.open(); err != nil {
				if s.retry(err) {
					continue
				}
				break
			}
		}
		ev, err := s.stream.Recv()
		if err != nil {
			s.closeStream()
			if err == io.EOF {
				s.err = io.EOF
				break
			}
			if s.retry(err) {
				continue
			}
			break
		}
		last := s.LastSeq()
		if ev.Seq <= last {
			continue // never a duplicate (the server does not send any, but be sure)
		}
		if !s.filtered && last > 0 && ev.Seq != last+1 {
			s.closeStream()
			s.err = &Error{Code: codes.DataLoss, Method: "StreamOutputs",
				Message: fmt.Sprintf("event stream gap: after seq %d came seq %d", last, ev.Seq)}
			break
		}
		atomic.StoreInt64(&s.lastSeq, ev.Seq)
		s.failures = 0
		return ev, nil
	}
	s.closeStream()
	s.stop()
	return nil, s.err
}

func (s *EventStream) open() error {
	ctx, cancel := context.WithCancel(s.ctx)
	st, err := s.k.c.rpc.StreamOutputs(ctx, &cellgatev1.StreamOutputsRequest{
		KernelId:    s.k.id,
		AfterSeq:    s.LastSeq(),
		Follow:      s.follow,
		CellId:      s.cfg.cellID,
		ExecutionId: s.cfg.executionID,
	})
	if err != nil {
		cancel()
		return err
	}
	s.stream, s.cancel = st, cancel
	return nil
}

// retry decides what to do with a stream error: after a backoff, reconnect (true), or record
// the final error (false).
func (s *EventStream) retry(err error) bool {
	werr := wrap("StreamOutputs", err)
	code := Code(werr)
	if (code != codes.Unavailable && code != codes.ResourceExhausted) || s.ctx.Err() != nil ||
		s.failures >= s.cfg.maxRetries {
		if s.ctx.Err() != nil && code != codes.Canceled && code != codes.DeadlineExceeded {
			werr = wrap("StreamOutputs", s.ctx.Err())
		}
		s.err = werr
		return false
	}
	s.failures++
	atomic.AddInt64(&s.reconnects, 1)
	d := s.cfg.initialBackoff
	for i := 1; i < s.failures && d < s.cfg.maxBackoff; i++ {
		d *= 2
	}
	if d > s.cfg.maxBackoff {
		d = s.cfg.maxBackoff
	}
	if d > 0 {
		d = d/2 + time.Duration(rand.Int63n(int64(d)/2+1)) // jitter: [d/2, d]
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			s.err = wrap("StreamOutputs", s.ctx.Err())
			return false
		}
	}
	return true
}
