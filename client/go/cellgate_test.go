package cellgate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cellgatev1 "cellgate/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The tests run against the real server binary: $CELLGATE_BINARY, or the CMake build's
// ../../build/server/cellgate. TestMain starts two servers on port 0:
//   - srv: default flags.
//   - lagSrv: auth on (token lagToken), a 1 MiB event log and a 128 KiB lag cut, to test the
//     resumption of a reader that falls behind.

var (
	testDir  string
	srv      *server
	lagSrv   *server
	lagToken = "test-token-" + strconv.Itoa(os.Getpid())
)

type server struct {
	cmd  *exec.Cmd
	addr string
	log  string
	done chan struct{}
}

// startServer starts the binary with its own runtime and state dirs under dir and waits for
// the port file.
func startServer(binary, dir string, uidBase int, extra ...string) (*server, error) {
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o711); err != nil {
			return nil, err
		}
	}
	portFile := filepath.Join(dir, "port")
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	args := append([]string{
		"--listen=127.0.0.1:0",
		"--port-file=" + portFile,
		"--runtime-dir=" + filepath.Join(dir, "run"),
		"--state-dir=" + filepath.Join(dir, "state"),
		"--kernel-uid-base=" + strconv.Itoa(uidBase),
		"--max-kernels=32",
		"--drain-seconds=2",
		// These tests watch a killed kernel stay DEAD; the server's own suite tests restarts.
		"--restart-on-death=false",
	}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies (a panic, a timeout), the server gets SIGTERM. Pdeathsig follows
	// the forking thread: testMain locks its goroutine to its thread for the whole run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The server writes the port file atomically (rename) once it listens.
		if b, err := os.ReadFile(portFile); err == nil {
			if port, perr := strconv.Atoi(string(bytes.TrimSpace(b))); perr == nil && port > 0 {
				s.addr = "127.0.0.1:" + strconv.Itoa(port)
				return s, nil
			}
		}
		select {
		case <-s.done:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("server exited during startup: %v\n%s", cmd.ProcessState, out)
		case <-time.After(10 * time.Millisecond): // polling the port file, with a deadline
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("server did not write its port file within 30s")
		}
	}
}

// stop sends SIGTERM (a graceful drain) and waits; SIGKILL after 30 s.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return errors.New("server did not exit within 30s of SIGTERM")
	}
	if !s.cmd.ProcessState.Success() {
		return fmt.Errorf("server exited with %v", s.cmd.ProcessState)
	}
	return nil
}

func serverBinary() (string, error) {
	if b := os.Getenv("CELLGATE_BINARY"); b != "" {
		return filepath.Abs(b)
	}
	// The package dir may be reached through a GOPATH symlink: resolve it before going up.
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if wd, err = filepath.EvalSymlinks(wd); err != nil {
		return "", err
	}
	return filepath.Join(wd, "..", "..", "build", "server", "cellgate"), nil
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	runtime.LockOSThread() // the servers' parent-death signal is tied to this thread
	binary, err := serverBinary()
	if err == nil {
		_, err = os.Stat(binary)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cellgate server binary: %v (build it, or set CELLGATE_BINARY)\n", err)
		return 1
	}
	// Kernels run as their own uids when root: every parent of the runtime dir must be o+x.
	testDir, err = os.MkdirTemp("", "cggo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(testDir)
	if err := os.Chmod(testDir, 0o711); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	uidBase := 700000 + (os.Getpid()%1000)*64
	srv, err = startServer(binary, filepath.Join(testDir, "a"), uidBase)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tokenFile := filepath.Join(testDir, "tokens")
	if err := os.WriteFile(tokenFile, []byte("# test tokens\n"+lagToken+"\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lagSrv, err = startServer(binary, filepath.Join(testDir, "b"), uidBase+32,
		"--auth-token-file="+tokenFile, "--event-log-bytes=1048576", "--stream-max-lag-bytes=131072")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = srv.stop()
		return 1
	}
	code := m.Run()
	for _, s := range []*server{srv, lagSrv} {
		if err := s.stop(); err != nil {
			out, _ := os.ReadFile(s.log)
			fmt.Fprintf(os.Stderr, "%v\n--- server log ---\n%s\n", err, out)
			code = 1
		}
	}
	return code
}

// ---- helpers ----

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, s *server, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(testContext(t, 10*time.Second), s.addr, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func startKernel(t *testing.T, c *Client, opts *StartKernelOptions) *Kernel {
	t.Helper()
	k, err := c.StartKernel(testContext(t, 90*time.Second), opts)
	if err != nil {
		t.Fatalf("StartKernel: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := k.Shutdown(ctx); err != nil && !IsNotFound(err) {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return k
}

func wantStatus(t *testing.T, res *cellgatev1.ExecutionResult, want cellgatev1.ExecutionStatus) {
	t.Helper()
	if res.Status != want {
		t.Fatalf("status %v, want %v; text %q, detail %q", res.Status, want, res.Text, res.StatusDetail)
	}
}

// wantCode checks err's code, and that it is an *Error matching the sentinel.
func wantCode(t *testing.T, err error, want codes.Code) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want an *Error with %v", err, err, want)
	}
	if e.Code != want {
		t.Fatalf("error %v, want code %v", err, want)
	}
	if !errors.Is(err, &Error{Code: want}) {
		t.Fatalf("errors.Is(%v, sentinel %v) is false", err, want)
	}
	if status.Code(err) != want {
		t.Fatalf("status.Code(%v) = %v, want %v", err, status.Code(err), want)
	}
	return e
}

// readUntilFinished reads events until the execution_finished of execID and returns them all.
// It checks that seqs are consecutive.
func readUntilFinished(t *testing.T, st *EventStream, execID string) []*cellgatev1.OutputEvent {
	t.Helper()
	var evs []*cellgatev1.OutputEvent
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("Next after seq %d (%d events read, %d reconnects): %v", st.LastSeq(), len(evs), st.Reconnects(), err)
		}
		if n := len(evs); n > 0 && ev.Seq != evs[n-1].Seq+1 {
			t.Fatalf("seq %d follows seq %d: a gap or a duplicate", ev.Seq, evs[n-1].Seq)
		}
		evs = append(evs, ev)
		if ev.GetExecutionFinished() != nil && ev.ExecutionId == execID {
			return evs
		}
	}
}

// replay reads the retained events after afterSeq without following, until io.EOF.
func replay(t *testing.T, k *Kernel, afterSeq int64) []*cellgatev1.OutputEvent {
	t.Helper()
	st := k.StreamOutputs(testContext(t, 30*time.Second), afterSeq, false)
	defer st.Close()
	var evs []*cellgatev1.OutputEvent
	for {
		ev, err := st.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("replay Next: %v", err)
		}
		evs = append(evs, ev)
	}
}

// sameEvents checks that got is a prefix of the replay want, event for event.
func sameEvents(t *testing.T, got, want []*cellgatev1.OutputEvent) {
	t.Helper()
	if len(got) > len(want) {
		t.Fatalf("followed %d events, replay has %d", len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("event %d differs:\nfollowed %v\nreplayed %v", i, got[i], want[i])
		}
	}
}

// ---- tests ----

func TestServerInfo(t *testing.T) {
	c := dial(t, srv)
	ctx := testContext(t, 10*time.Second)
	info, err := c.ServerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version == "" || info.Caps.GetMaxKernels() != 32 || info.AuthRequired {
		t.Fatalf("unexpected server info: %v", info)
	}
	specs, def, err := c.KernelSpecs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range specs {
		found = found || s.Name == def
	}
	if def != "python3" || !found {
		t.Fatalf("default spec %q not among %v", def, specs)
	}
}

func TestKernelCellsAndExecution(t *testing.T) {
	c := dial(t, srv)
	label := "cells-" + strconv.Itoa(os.Getpid())
	k := startKernel(t, c, &StartKernelOptions{Labels: map[string]string{"test": label}})
	ctx := testContext(t, 90*time.Second)

	t.Run("ListKernels", func(t *testing.T) {
		ks, err := c.ListKernels(ctx, map[string]string{"test": label})
		if err != nil {
			t.Fatal(err)
		}
		if len(ks) != 1 || ks[0].KernelId != k.ID() || ks[0].State != cellgatev1.KernelState_KERNEL_STATE_IDLE {
			t.Fatalf("ListKernels = %v, want just %s IDLE", ks, k.ID())
		}
	})

	t.Run("AddAndRun", func(t *testing.T) {
		cell, err := k.AddCell(ctx, "print('hi')\n6 * 7", WithCellID("hello"))
		if err != nil {
			t.Fatal(err)
		}
		if cell.CellId != "hello" || cell.State != cellgatev1.CellState_CELL_STATE_NEW {
			t.Fatalf("AddCell = %v", cell)
		}
		res, err := k.RunCell(ctx, "hello", WithTimeout(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, res, cellgatev1.ExecutionStatus_EXECUTION_STATUS_OK)
		if res.Text != "hi\n42\n" || res.CellId != "hello" || res.ExecutionCount < 1 || res.ExecutionId == "" {
			t.Fatalf("RunCell = %v", res)
		}
		// A retry with the same id does not add the cell twice.
		_, err = k.AddCell(ctx, "print('again')", WithCellID("hello"))
		wantCode(t, err, codes.AlreadyExists)
		if !IsAlreadyExists(err) {
			t.Fatal("IsAlreadyExists is false")
		}
		got, err := k.Cell(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != cellgatev1.CellState_CELL_STATE_OK || len(got.Outputs) != 2 {
			t.Fatalf("cell after run: %v", got)
		}
	})

	t.Run("EditMoveDelete", func(t *testing.T) {
		cell, err := k.AddCell(ctx, "y = 1", AtIndex(0), WithMetadata(`{"tags": ["setup"]}`))
		if err != nil {
			t.Fatal(err)
		}
		if cell.Index != 0 {
			t.Fatalf("AtIndex(0) gave index %d", cell.Index)
		}
		edited, err := k.EditCell(ctx, cell.CellId, "# Notes", WithCellType(cellgatev1.CellType_CELL_TYPE_MARKDOWN))
		if err != nil {
			t.Fatal(err)
		}
		if edited.CellType != cellgatev1.CellType_CELL_TYPE_MARKDOWN || edited.Source != "# Notes" {
			t.Fatalf("EditCell = %v", edited)
		}
		moved, err := k.MoveCell(ctx, cell.CellId, 1)
		if err != nil || moved.Index != 1 {
			t.Fatalf("MoveCell = %v, %v", moved, err)
		}
		if err := k.DeleteCell(ctx, cell.CellId); err != nil {
			t.Fatal(err)
		}
		_, err = k.Cell(ctx, cell.CellId)
		wantCode(t, err, codes.NotFound)
	})

	t.Run("ErrorAndExecute", func(t *testing.T) {
		cell, err := k.AddCell(ctx, "1/0")
		if err != nil {
			t.Fatal(err)
		}
		res, err := k.RunCell(ctx, cell.CellId)
		if err != nil {
			t.Fatalf("an exception must not be an RPC error: %v", err)
		}
		wantStatus(t, res, cellgatev1.ExecutionStatus_EXECUTION_STATUS_ERROR)
		if res.Error.GetEname() != "ZeroDivisionError" || !strings.HasPrefix(res.Text, "ZeroDivisionError: division by zero\n") {
			t.Fatalf("error result: %v", res)
		}
		if err := k.DeleteCell(ctx, cell.CellId); err != nil {
			t.Fatal(err)
		}

		res, err = k.Execute(ctx, "z = 5\nz * 2")
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, res, cellgatev1.ExecutionStatus_EXECUTION_STATUS_OK)
		if res.Text != "10\n" || res.CellId != "" {
			t.Fatalf("Execute = %v", res)
		}
		res, err = k.Execute(ctx, "import time\ntime.sleep(30)", WithTimeout(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, res, cellgatev1.ExecutionStatus_EXECUTION_STATUS_TIMEOUT)
	})

	t.Run("RunAll", func(t *testing.T) {
		if _, err := k.AddCell(ctx, "print('second')", WithCellID("second")); err != nil {
			t.Fatal(err)
		}
		if _, err := k.AddCell(ctx, "Some *text*", WithCellType(cellgatev1.CellType_CELL_TYPE_MARKDOWN)); err != nil {
			t.Fatal(err)
		}
		if _, err := k.AddCell(ctx, "   "); err != nil {
			t.Fatal(err)
		}
		res, err := k.RunAll(ctx, WithTimeout(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Results) != 2 || res.Results[0].CellId != "hello" || res.Results[1].Text != "second\n" {
			t.Fatalf("RunAll results: %v", res.Results)
		}
		for _, r := range res.Results {
			wantStatus(t, r, cellgatev1.ExecutionStatus_EXECUTION_STATUS_OK)
		}
		if len(res.Skipped) != 1 || res.Skipped[0].Reason != cellgatev1.SkipReason_SKIP_REASON_EMPTY_SOURCE {
			t.Fatalf("RunAll skipped: %v", res.Skipped)
		}
	})

	t.Run("NotebookExportImport", func(t *testing.T) {
		nb, err := k.Notebook(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nb.Cells) != 4 || nb.Cells[0].CellId != "hello" || nb.LastSeq == 0 {
			t.Fatalf("Notebook = %v", nb)
		}
		ipynb, err := k.ExportIpynb(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Nbformat      int `json:"nbformat"`
			NbformatMinor int `json:"nbformat_minor"`
			Cells         []struct {
				ID string `json:"id"`
			} `json:"cells"`
		}
		if err := json.Unmarshal(ipynb, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Nbformat != 4 || doc.NbformatMinor != 5 || len(doc.Cells) != 4 || doc.Cells[0].ID != "hello" {
			t.Fatalf("export: %s", ipynb)
		}
		// Importing the export appended: ids already used get fresh ones.
		nb2, err := k.ImportIpynb(ctx, ipynb, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(nb2.Cells) != 8 || nb2.Cells[4].CellId == "hello" || nb2.Cells[4].Source != nb.Cells[0].Source {
			t.Fatalf("import: %v", nb2)
		}
		nb3, err := k.ImportIpynb(ctx, ipynb, true)
		if err != nil || len(nb3.Cells) != 4 || len(nb3.Cells[0].Outputs) == 0 {
			t.Fatalf("import replace: %v, %v", nb3, err)
		}
		// Without outputs: the same cells, none with outputs; the notebook still has them.
		lean, err := k.ImportIpynb(ctx, ipynb, true, WithoutOutputs())
		if err != nil || len(lean.Cells) != 4 || lean.Cells[0].CellId != "hello" {
			t.Fatalf("import without outputs: %v, %v", lean, err)
		}
		leanNb, err := k.Notebook(ctx, WithoutOutputs())
		if err != nil || len(leanNb.Cells) != 4 {
			t.Fatalf("Notebook without outputs: %v, %v", leanNb, err)
		}
		for i := range lean.Cells {
			if len(lean.Cells[i].Outputs) != 0 || len(leanNb.Cells[i].Outputs) != 0 {
				t.Fatalf("cell %d has outputs: %v / %v", i, lean.Cells[i], leanNb.Cells[i])
			}
		}
		if full, err := k.Notebook(ctx); err != nil || len(full.Cells[0].Outputs) != len(nb3.Cells[0].Outputs) {
			t.Fatalf("Notebook after an import without outputs: %v, %v", full, err)
		}
		_, err = k.ImportIpynb(ctx, []byte(`{"nbformat": 3}`), true)
		wantCode(t, err, codes.InvalidArgument)
	})

	t.Run("StreamFollowAndReplay", func(t *testing.T) {
		info, err := k.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start := info.LastSeq
		st := k.StreamOutputs(ctx, start, true)
		defer st.Close()
		cell, err := k.AddCell(ctx, "for i in range(3):\n    print(i, flush=True)")
		if err != nil {
			t.Fatal(err)
		}
		res, err := k.RunCell(ctx, cell.CellId)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, res, cellgatev1.ExecutionStatus_EXECUTION_STATUS_OK)
		evs := readUntilFinished(t, st, res.ExecutionId)
		if evs[0].Seq != start+1 || evs[0].GetExecutionQueued() == nil || evs[0].CellId != cell.CellId {
			t.Fatalf("first followed event: %v", evs[0])
		}
		var text strings.Builder
		for _, ev := range evs {
			text.WriteString(ev.GetOutput().GetStream().GetText())
		}
		if text.String() != "0\n1\n2\n" {
			t.Fatalf("streamed text %q", text.String())
		}
		sameEvents(t, evs, replay(t, k, start))
		if st.LastSeq() != evs[len(evs)-1].Seq || st.Reconnects() != 0 {
			t.Fatalf("LastSeq %d, Reconnects %d", st.LastSeq(), st.Reconnects())
		}

		// Filtered replay: only this cell's execution (and kernel_status events).
		fst := k.StreamOutputs(ctx, start, false, WithExecutionFilter(res.ExecutionId))
		for {
			ev, err := fst.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.GetKernelStatus() == nil && ev.ExecutionId != res.ExecutionId {
				t.Fatalf("filter let through %v", ev)
			}
		}

		// Close unblocks a Next waiting for live events.
		info, err = k.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		lst := k.StreamOutputs(ctx, info.LastSeq, true)
		errc := make(chan error, 1)
		go func() { _, err := lst.Next(); errc <- err }()
		lst.Close()
		wantCode(t, <-errc, codes.Canceled)

		// Beyond the last seq: OUT_OF_RANGE, without retries.
		info, err = k.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = k.StreamOutputs(ctx, info.LastSeq+100, true).Next()
		wantCode(t, err, codes.OutOfRange)
		if !IsOutOfRange(err) {
			t.Fatal("IsOutOfRange is false")
		}
	})

	t.Run("ResumeAfterConnectionLoss", func(t *testing.T) {
		p := newProxy(t, srv.addr)
		pc := dial(t, &server{addr: p.addr()})
		pk := pc.Kernel(k.ID())
		info, err := k.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start := info.LastSeq
		st := pk.StreamOutputs(ctx, start, true, WithReconnect(20, 20*time.Millisecond, 500*time.Millisecond))
		defer st.Close()
		r1, err := k.Execute(ctx, "print('before the cut')")
		if err != nil {
			t.Fatal(err)
		}
		evs := readUntilFinished(t, st, r1.ExecutionId)
		p.cutAll()
		r2, err := k.Execute(ctx, "print('after the cut')")
		if err != nil {
			t.Fatal(err)
		}
		more := readUntilFinished(t, st, r2.ExecutionId)
		if more[0].Seq != evs[len(evs)-1].Seq+1 {
			t.Fatalf("after the cut came seq %d, after seq %d", more[0].Seq, evs[len(evs)-1].Seq)
		}
		evs = append(evs, more...)
		if st.Reconnects() == 0 {
			t.Fatal("the stream did not reconnect after the connection was cut")
		}
		sameEvents(t, evs, replay(t, k, start))
	})
}

// TestResumeAfterLagCut stalls a reader on a small flow-control window while a cell prints
// ~600 KB: the server cuts it off (RESOURCE_EXHAUSTED) once it is 128 KiB behind, and the
// EventStream resumes from its last seq, without a gap or a duplicate.
// The dependency graph from Go: what cells define and depend on, STALE marking of exactly the
// dependents of an edit, a DEPENDENTS cascade and RunStale.
func TestDependencies(t *testing.T) {
	c := dial(t, srv)
	k := startKernel(t, c, nil)
	ctx := testContext(t, 90*time.Second)
	for _, cell := range [][2]string{
		{"load", "data = [1, 2, 3]"}, {"other", "greeting = 'hi'"},
		{"total", "total = sum(data)"}, {"report", "print(total)"},
	} {
		if _, err := k.AddCell(ctx, cell[1], WithCellID(cell[0])); err != nil {
			t.Fatal(err)
		}
	}
	total, err := k.Cell(ctx, "total")
	if err != nil {
		t.Fatal(err)
	}
	if total.Analysis != cellgatev1.AnalysisStatus_ANALYSIS_STATUS_ANALYZED ||
		strings.Join(total.Uses, ",") != "data" || strings.Join(total.DependsOn, ",") != "load" {
		t.Fatalf("total = %v, want it to read data from load", total)
	}
	if all, err := k.RunAll(ctx); err != nil || len(all.Results) != 4 {
		t.Fatalf("RunAll = %v, %v", all, err)
	}
	if _, err := k.EditCell(ctx, "load", "data = [4, 5]"); err != nil {
		t.Fatal(err)
	}
	nb, err := k.Notebook(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var stale []string
	for _, cell := range nb.Cells {
		if cell.State == cellgatev1.CellState_CELL_STATE_STALE {
			stale = append(stale, cell.CellId+": "+cell.StaleReason)
		}
	}
	want := "load: source edited|total: upstream cell load edited|report: upstream cell load edited"
	if strings.Join(stale, "|") != want {
		t.Fatalf("stale cells %q, want %q", stale, want)
	}
	res, err := k.RunCell(ctx, "load", WithCascade(cellgatev1.Cascade_CASCADE_DEPENDENTS))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, cellgatev1.ExecutionStatus_EXECUTION_STATUS_OK)
	if got := res.GetCascade().GetResults(); len(got) != 2 || got[0].CellId != "total" ||
		got[1].Text != "9\n" {
		t.Fatalf("cascade results %v, want total then report printing 9", got)
	}
	if _, err := k.EditCell(ctx, "total", "total = sum(data) * 2"); err != nil {
		t.Fatal(err)
	}
	run, err := k.RunStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Results) != 2 || run.Results[0].CellId != "total" || run.Results[1].Text != "18\n" {
		t.Fatalf("RunStale = %v, want total and report", run)
	}
}

// Files in a kernel's workspace from Go: upload, read by the kernel, list, download, delete,
// and a path that leaves the workspace refused.
func TestFiles(t *testing.T) {
	c := dial(t, srv)
	k := startKernel(t, c, nil)
	ctx := testContext(t, 90*time.Second)
	data := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB: several chunks
	info, err := k.UploadFile(ctx, "in/data.txt", bytes.NewReader(data), int64(len(data)), false)
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != "in/data.txt" || info.Size != int64(len(data)) {
		t.Fatalf("UploadFile = %v", info)
	}
	res, err := k.Execute(ctx, "print(len(open('in/data.txt').read()))")
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != "3000000\n" {
		t.Fatalf("the kernel read %q", res.Text)
	}
	_, err = k.UploadFile(ctx, "in/data.txt", bytes.NewReader([]byte("x")), 1, false)
	wantCode(t, err, codes.AlreadyExists)
	list, err := k.ListFiles(ctx, "in", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Files) != 1 || list.Files[0].Path != "in/data.txt" ||
		list.Files[0].Kind != cellgatev1.FileKind_FILE_KIND_FILE {
		t.Fatalf("ListFiles = %v", list.Files)
	}
	var got bytes.Buffer
	if _, err := k.DownloadFile(ctx, "in/data.txt", &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("downloaded %d bytes, want the %d uploaded", got.Len(), len(data))
	}
	_, err = k.DownloadFile(ctx, "../../etc/passwd", io.Discard)
	wantCode(t, err, codes.InvalidArgument)
	if err := k.DeleteFile(ctx, "in", true); err != nil {
		t.Fatal(err)
	}
	_, err = k.DownloadFile(ctx, "in/data.txt", io.Discard)
	wantCode(t, err, codes.NotFound)
}

func TestResumeAfterLagCut(t *testing.T) {
	admin := dial(t, lagSrv, WithToken(lagToken))
	slow := dial(t, lagSrv, WithToken(lagToken), WithDialOptions(
		grpc.WithInitialWindowSize(65535), // a static window: no BDP growth
		grpc.WithInitialConnWindowSize(65535),
	))
	k := startKernel(t, admin, nil)
	ctx := testContext(t, 90*time.Second)
	info, err := k.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := info.LastSeq - 1
	st := slow.Kernel(k.ID()).StreamOutputs(ctx, start, true)
	defer st.Close()
	// One event, so the stream is open and following before the output starts.
	if ev, err := st.Next(); err != nil || ev.Seq != info.LastSeq {
		t.Fatalf("first event %v, %v", ev, err)
	}
	res, err := k.Execute(ctx, "import sys\nline = 'x' * 593\n"+
		"for i in range(1000):\n    print(f'{i:06d} {line}')\n    sys.stdout.flush()\n")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, cellgatev1.ExecutionStatus_EXECUTION_STATUS_OK)
	// The reader was stalled all along; now read everything.
	evs := readUntilFinished(t, st, res.ExecutionId)
	var printed int
	for _, ev := range evs {
		printed += len(ev.GetOutput().GetStream().GetText())
	}
	if printed != 1000*601 {
		t.Fatalf("streamed %d bytes of output, want %d", printed, 1000*601)
	}
	if st.Reconnects() == 0 {
		t.Fatalf("the stalled reader was never cut off (%d events)", len(evs))
	}
	all := replay(t, k, start)
	sameEvents(t, evs, all[1:])
	t.Logf("%d events, %d reconnects", len(evs)+1, st.Reconnects())

	// A reader stalled while more than the whole log (1 MiB) is printed: it is cut off, and by
	// the time it reads again its events were evicted, so the resumption fails OUT_OF_RANGE.
	info, err = k.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lost := slow.Kernel(k.ID()).StreamOutputs(ctx, info.LastSeq-1, true)
	defer lost.Close()
	if ev, err := lost.Next(); err != nil || ev.Seq != info.LastSeq {
		t.Fatalf("first event %v, %v", ev, err)
	}
	res, err = k.Execute(ctx, "import sys\nline = 'y' * 593\n"+
		"for i in range(2000):\n    print(f'{i:06d} {line}')\n    sys.stdout.flush()\n")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, cellgatev1.ExecutionStatus_EXECUTION_STATUS_OK)
	var n int
	for {
		ev, err := lost.Next()
		if err == nil {
			if ev.GetExecutionFinished() != nil && ev.ExecutionId == res.ExecutionId {
				t.Fatal("read the whole execution although the log could not hold it")
			}
			n++
			continue
		}
		wantCode(t, err, codes.OutOfRange)
		if lost.Reconnects() != 1 {
			t.Fatalf("%d reconnects before OUT_OF_RANGE, want 1", lost.Reconnects())
		}
		if _, again := lost.Next(); again != err {
			t.Fatalf("the error is not final: then %v", again)
		}
		t.Logf("%d events before: %v", n, err)
		break
	}
	// The same from a fresh stream, at once (after_seq 0 would mean "what is retained").
	_, err = k.StreamOutputs(ctx, 1, false).Next()
	wantCode(t, err, codes.OutOfRange)
}

func TestAuth(t *testing.T) {
	ctx := testContext(t, 10*time.Second)
	_, err := dial(t, lagSrv).ServerInfo(ctx)
	wantCode(t, err, codes.Unauthenticated)
	_, err = dial(t, lagSrv, WithToken("wrong")).ServerInfo(ctx)
	if !IsUnauthenticated(err) {
		t.Fatalf("wrong token: %v", err)
	}
	info, err := dial(t, lagSrv, WithToken(lagToken)).ServerInfo(ctx)
	if err != nil || !info.AuthRequired {
		t.Fatalf("ServerInfo with token: %v, %v", info, err)
	}
}

func TestErrors(t *testing.T) {
	c := dial(t, srv)
	ctx := testContext(t, 30*time.Second)

	_, err := c.Kernel("0123456789abcdef0123456789abcdef").Info(ctx)
	e := wantCode(t, err, codes.NotFound)
	if !IsNotFound(err) || !errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidArgument) || e.Method != "GetKernel" {
		t.Fatalf("NOT_FOUND error %#v", e)
	}
	_, err = c.Kernel("0123456789abcdef0123456789abcdef").RunCell(ctx, "x")
	wantCode(t, err, codes.NotFound)

	_, err = c.Kernel("not a kernel id!").Info(ctx)
	if e := wantCode(t, err, codes.InvalidArgument); e.Field() != "kernel_id" {
		t.Fatalf("field %q in %v", e.Field(), err)
	}

	_, err = c.StartKernel(ctx, &StartKernelOptions{Limits: &cellgatev1.ResourceLimits{AddressSpaceBytes: 1 << 50}})
	if e := wantCode(t, err, codes.InvalidArgument); e.Field() != "limits.address_space_bytes" {
		t.Fatalf("field %q in %v", e.Field(), err)
	}
	_, err = c.StartKernel(ctx, &StartKernelOptions{KernelSpec: "no-such-spec"})
	if e := wantCode(t, err, codes.InvalidArgument); e.Field() != "kernel_spec" {
		t.Fatalf("field %q in %v", e.Field(), err)
	}
}

// TestDeadKernel kills a kernel's process: executions then fail FAILED_PRECONDITION until
// Restart; a followed stream ends (io.EOF) when the kernel is shut down.
func TestDeadKernel(t *testing.T) {
	c := dial(t, srv)
	k := startKernel(t, c, nil)
	ctx := testContext(t, 90*time.Second)

	cell, err := k.AddCell(ctx, "print('alive')")
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.AddCell(ctx, "bad id", WithCellID("bad id"))
	if e := wantCode(t, err, codes.InvalidArgument); e.Field() != "cell_id" {
		t.Fatalf("field %q in %v", e.Field(), err)
	}
	_, err = k.RunCell(ctx, cell.CellId, WithTimeout(-time.Millisecond))
	if e := wantCode(t, err, codes.InvalidArgument); e.Field() != "timeout_ms" {
		t.Fatalf("field %q in %v", e.Field(), err)
	}
	_, err = k.Execute(ctx, "  \n")
	if e := wantCode(t, err, codes.InvalidArgument); e.Field() != "code" {
		t.Fatalf("field %q in %v", e.Field(), err)
	}
	_, err = k.RunCell(ctx, "nosuchcell")
	wantCode(t, err, codes.NotFound)

	info, err := k.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := k.StreamOutputs(ctx, info.LastSeq, true)
	defer st.Close()
	if info.Pid <= 0 {
		t.Fatalf("kernel pid %d", info.Pid)
	}
	if err := syscall.Kill(int(info.Pid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", info.Pid, err)
	}
	// Wait for the DEAD kernel_status event.
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("waiting for DEAD: %v", err)
		}
		if ev.GetKernelStatus().GetState() == cellgatev1.KernelState_KERNEL_STATE_DEAD {
			break
		}
	}
	info, err = k.Info(ctx)
	if err != nil || info.State != cellgatev1.KernelState_KERNEL_STATE_DEAD || info.LastDeathReason == "" {
		t.Fatalf("after kill: %v, %v", info, err)
	}
	_, err = k.Execute(ctx, "1")
	wantCode(t, err, codes.FailedPrecondition)
	_, err = k.RunCell(ctx, cell.CellId)
	wantCode(t, err, codes.FailedPrecondition)
	_, err = k.RunAll(ctx)
	wantCode(t, err, codes.FailedPrecondition)
	_, err = k.Interrupt(ctx)
	if !IsFailedPrecondition(err) {
		t.Fatalf("Interrupt on a dead kernel: %v", err)
	}

	if info, err = k.Restart(ctx); err != nil || info.State != cellgatev1.KernelState_KERNEL_STATE_IDLE {
		t.Fatalf("Restart: %v, %v", info, err)
	}
	res, err := k.RunCell(ctx, cell.CellId)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, cellgatev1.ExecutionStatus_EXECUTION_STATUS_OK)

	if err := k.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("followed stream after shutdown: %v", err)
		}
	}
	_, err = k.Info(ctx)
	wantCode(t, err, codes.NotFound)
}

// ---- the example program ----

func notebookJSON(t *testing.T, sources ...string) []byte {
	t.Helper()
	type cell struct {
		ID             string                 `json:"id"`
		CellType       string                 `json:"cell_type"`
		Metadata       map[string]interface{} `json:"metadata"`
		Source         string                 `json:"source"`
		Outputs        []interface{}          `json:"outputs,omitempty"`
		ExecutionCount *int                   `json:"execution_count"`
	}
	nb := map[string]interface{}{
		"nbformat": 4, "nbformat_minor": 5,
		"metadata": map[string]interface{}{"kernelspec": map[string]string{"name": "python3", "display_name": "Python 3", "language": "python"}},
	}
	var cells []interface{}
	for i, src := range sources {
		if strings.HasPrefix(src, "#md ") {
			cells = append(cells, map[string]interface{}{
				"id": fmt.Sprintf("md%d", i), "cell_type": "markdown", "metadata": map[string]interface{}{},
				"source": strings.TrimPrefix(src, "#md "),
			})
			continue
		}
		cells = append(cells, map[string]interface{}{
			"id": fmt.Sprintf("c%d", i), "cell_type": "code", "metadata": map[string]interface{}{},
			"source": src, "outputs": []interface{}{}, "execution_count": nil,
		})
	}
	nb["cells"] = cells
	b, err := json.MarshalIndent(nb, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRunNotebookExample(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "run_notebook")
	build := exec.Command(goTool, "build", "-o", bin, "./examples/run_notebook")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	run := func(name string, sources ...string) (int, string, string) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, notebookJSON(t, sources...), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx := testContext(t, 90*time.Second)
		cmd := exec.CommandContext(ctx, bin, "-target", srv.addr, path)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, stdout.String(), stderr.String()
	}

	code, out, errOut := run("ok.ipynb", "#md # A notebook", "x = 6 * 7\nprint('x is', x)", "x + 1")
	if code != 0 || !strings.Contains(out, "── cell c1 [1] OK") || !strings.Contains(out, "x is 42\n") ||
		!strings.Contains(out, "── cell c2 [2] OK") || !strings.Contains(out, "43\n") {
		t.Fatalf("ok.ipynb: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	code, out, errOut = run("fail.ipynb", "print('start')", "1/0", "print('never')")
	if code != 1 || !strings.Contains(out, "start\n") || !strings.Contains(out, "── cell c1 [2] ERROR") ||
		!strings.Contains(out, "ZeroDivisionError: division by zero") ||
		!strings.Contains(out, "── cell c2 not run: PREVIOUS_FAILED") || strings.Contains(out, "never\n") {
		t.Fatalf("fail.ipynb: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// The example shut its kernels down.
	ks, err := dial(t, srv).ListKernels(testContext(t, 10*time.Second), map[string]string{"app": "run_notebook"})
	if err != nil || len(ks) != 0 {
		t.Fatalf("kernels left by run_notebook: %v, %v", ks, err)
	}
}

// ---- a TCP proxy whose connections can be cut ----

type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cutAll() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close(); in.Close() }()
		go func() { _, _ = io.Copy(in, out); out.Close(); in.Close() }()
	}
}

// cutAll closes every proxied connection (new ones are still accepted).
func (p *proxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
