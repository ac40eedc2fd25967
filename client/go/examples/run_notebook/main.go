// Command run_notebook runs a Jupyter notebook on a cellgate server and prints what each code
// cell printed and returned.
//
//	run_notebook -target HOST:PORT [-token TOKEN] [-timeout 10m] [-keep-going] NOTEBOOK.ipynb
//
// It starts a kernel, imports the notebook, runs all its cells (RunAll), prints each cell's
// ExecutionResult.text under a header naming the cell and its status, shuts the kernel down,
// and exits 0 if every code cell ran OK, 1 if a cell failed (or was not run because an
// earlier one failed), 2 on a usage or RPC error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"cellgate"
	cellgatev1 "cellgate/v1"
)

func main() {
	os.Exit(run())
}

func run() int {
	target := flag.String("target", "127.0.0.1:50051", "cellgate server: HOST:PORT or unix:/path")
	token := flag.String("token", os.Getenv("CELLGATE_TOKEN"), "bearer token (default $CELLGATE_TOKEN)")
	timeout := flag.Duration("timeout", 10*time.Minute, "overall time limit")
	cellTimeout := flag.Duration("cell-timeout", 0, "time limit per cell (0 = the server's default)")
	keepGoing := flag.Bool("keep-going", false, "run the cells after a failed one too")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] NOTEBOOK.ipynb\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		return 2
	}
	ipynb, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "run_notebook:", err)
		return 2
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var opts []cellgate.Option
	if *token != "" {
		opts = append(opts, cellgate.WithToken(*token))
	}
	client, err := cellgate.Dial(ctx, *target, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "run_notebook:", err)
		return 2
	}
	defer client.Close()

	kernel, err := client.StartKernel(ctx, &cellgate.StartKernelOptions{
		Labels: map[string]string{"app": "run_notebook"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "run_notebook:", err)
		return 2
	}
	defer func() {
		// Shut down even if ctx expired.
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		if err := kernel.Shutdown(sctx); err != nil {
			fmt.Fprintln(os.Stderr, "run_notebook:", err)
		}
	}()

	if _, err := kernel.ImportIpynb(ctx, ipynb, true); err != nil {
		fmt.Fprintln(os.Stderr, "run_notebook:", err)
		return 2
	}
	var runOpts []cellgate.RunAllOption
	if *cellTimeout > 0 {
		runOpts = append(runOpts, cellgate.WithTimeout(*cellTimeout))
	}
	if *keepGoing {
		runOpts = append(runOpts, cellgate.ContinueOnError())
	}
	res, err := kernel.RunAll(ctx, runOpts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "run_notebook:", err)
		return 2
	}

	failed := 0
	for _, r := range res.Results {
		status := strings.TrimPrefix(r.Status.String(), "EXECUTION_STATUS_")
		fmt.Printf("── cell %s [%d] %s (%d ms)\n", r.CellId, r.ExecutionCount, status, r.DurationMs)
		fmt.Print(r.Text)
		if r.Text != "" && !strings.HasSuffix(r.Text, "\n") {
			fmt.Println()
		}
		if r.Status != cellgatev1.ExecutionStatus_EXECUTION_STATUS_OK {
			failed++
		}
	}
	for _, s := range res.Skipped {
		reason := strings.TrimPrefix(s.Reason.String(), "SKIP_REASON_")
		fmt.Printf("── cell %s not run: %s\n", s.CellId, reason)
		if s.Reason != cellgatev1.SkipReason_SKIP_REASON_EMPTY_SOURCE {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "run_notebook: %d of %d code cells failed or did not run\n",
			failed, len(res.Results)+len(res.Skipped))
		return 1
	}
	return 0
}
