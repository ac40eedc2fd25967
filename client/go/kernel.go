package cellgate

import (
	"context"

	cellgatev1 "cellgate/v1"
)

// Kernel is a handle on one kernel of the server and the notebook kept in it. It holds only the
// id: every method is one RPC. It is safe for concurrent use. Executions of one kernel run one
// at a time, in the order requested.
type Kernel struct {
	c  *Client
	id string
}

// ID returns the kernel's id.
func (k *Kernel) ID() string { return k.id }

// Client returns the client the kernel handle uses.
func (k *Kernel) Client() *Client { return k.c }

// Info returns the kernel's current state (GetKernel): state, pid, last_seq, counts, limits.
func (k *Kernel) Info(ctx context.Context) (*cellgatev1.Kernel, error) {
	info, err := k.c.rpc.GetKernel(ctx, &cellgatev1.GetKernelRequest{KernelId: k.id})
	return info, wrap("GetKernel", err)
}

// AddCell adds a cell (code unless WithCellType says otherwise) at the end of the notebook, or
// where AtIndex says, and returns it (state NEW). Nothing is run.
func (k *Kernel) AddCell(ctx context.Context, source string, opts ...AddCellOption) (*cellgatev1.Cell, error) {
	req := &cellgatev1.AddCellRequest{KernelId: k.id, Source: source}
	for _, o := range opts {
		o.applyAddCell(req)
	}
	cell, err := k.c.rpc.AddCell(ctx, req)
	return cell, wrap("AddCell", err)
}

// EditCell replaces a cell's source (always the full source; a code cell that ran becomes
// STALE), and its type or metadata if given.
func (k *Kernel) EditCell(ctx context.Context, cellID, source string, opts ...EditCellOption) (*cellgatev1.Cell, error) {
	req := &cellgatev1.EditCellRequest{KernelId: k.id, CellId: cellID, Source: source}
	for _, o := range opts {
		o.applyEditCell(req)
	}
	cell, err := k.c.rpc.EditCell(ctx, req)
	return cell, wrap("EditCell", err)
}

// DeleteCell deletes a cell and its outputs (FAILED_PRECONDITION while it is QUEUED or RUNNING).
func (k *Kernel) DeleteCell(ctx context.Context, cellID string) error {
	_, err := k.c.rpc.DeleteCell(ctx, &cellgatev1.DeleteCellRequest{KernelId: k.id, CellId: cellID})
	return wrap("DeleteCell", err)
}

// MoveCell moves a cell to index (its position after the move) and returns it.
func (k *Kernel) MoveCell(ctx context.Context, cellID string, index int32) (*cellgatev1.Cell, error) {
	cell, err := k.c.rpc.MoveCell(ctx, &cellgatev1.MoveCellRequest{KernelId: k.id, CellId: cellID, Index: index})
	return cell, wrap("MoveCell", err)
}

// Cell returns one cell with its outputs.
func (k *Kernel) Cell(ctx context.Context, cellID string) (*cellgatev1.Cell, error) {
	cell, err := k.c.rpc.GetCell(ctx, &cellgatev1.GetCellRequest{KernelId: k.id, CellId: cellID})
	return cell, wrap("GetCell", err)
}

// Notebook returns every cell in order, with outputs, and the last_seq the snapshot includes:
// StreamOutputs(ctx, nb.LastSeq, true) continues from it without a gap or a duplicate.
func (k *Kernel) Notebook(ctx context.Context, opts ...NotebookOption) (*cellgatev1.Notebook, error) {
	c := notebookConfigOf(opts)
	nb, err := k.c.rpc.GetNotebook(ctx, &cellgatev1.GetNotebookRequest{KernelId: k.id, OmitOutputs: c.omitOutputs})
	return nb, wrap("GetNotebook", err)
}

func runConfigOf(opts []RunOption) runConfig {
	var c runConfig
	for _, o := range opts {
		o.applyRun(&c)
	}
	return c
}

// RunCell runs a code cell with the source it has now and waits for the result. How the code
// ended is res.Status (OK, ERROR, TIMEOUT, ...); err is only for RPC failures.
func (k *Kernel) RunCell(ctx context.Context, cellID string, opts ...RunOption) (*cellgatev1.ExecutionResult, error) {
	c := runConfigOf(opts)
	res, err := k.c.rpc.RunCell(ctx, &cellgatev1.RunCellRequest{
		KernelId: k.id, CellId: cellID, TimeoutMs: c.timeoutMs, OnTimeout: c.onTimeout,
		Cascade: c.cascade,
	})
	return res, wrap("RunCell", err)
}

// RunStale runs every STALE code cell and every cell depending on one, in notebook order, and
// waits for them all (as RunAll otherwise). res.Note says when the dependency graph it
// followed was incomplete.
func (k *Kernel) RunStale(ctx context.Context, opts ...RunAllOption) (*cellgatev1.RunAllResult, error) {
	all := &cellgatev1.RunAllRequest{KernelId: k.id}
	for _, o := range opts {
		o.applyRunAll(all)
	}
	res, err := k.c.rpc.RunStale(ctx, &cellgatev1.RunStaleRequest{
		KernelId: k.id, StopOnError: all.StopOnError, TimeoutMs: all.TimeoutMs,
	})
	return res, wrap("RunStale", err)
}

// RunAll runs every code cell of the notebook in order and waits for them all: one result per
// cell run, the others listed in Skipped. By default the first cell that fails cancels the rest
// (see ContinueOnError).
func (k *Kernel) RunAll(ctx context.Context, opts ...RunAllOption) (*cellgatev1.RunAllResult, error) {
	req := &cellgatev1.RunAllRequest{KernelId: k.id}
	for _, o := range opts {
		o.applyRunAll(req)
	}
	res, err := k.c.rpc.RunAll(ctx, req)
	return res, wrap("RunAll", err)
}

// Execute runs scratch code that is not stored as a cell and waits for the result.
func (k *Kernel) Execute(ctx context.Context, code string, opts ...RunOption) (*cellgatev1.ExecutionResult, error) {
	c := runConfigOf(opts)
	res, err := k.c.rpc.Execute(ctx, &cellgatev1.ExecuteRequest{
		KernelId: k.id, Code: code, TimeoutMs: c.timeoutMs, OnTimeout: c.onTimeout,
	})
	return res, wrap("Execute", err)
}

// Interrupt interrupts the running execution (it ends INTERRUPTED) and cancels the queued ones.
func (k *Kernel) Interrupt(ctx context.Context) (*cellgatev1.Kernel, error) {
	info, err := k.c.rpc.InterruptKernel(ctx, &cellgatev1.InterruptKernelRequest{KernelId: k.id})
	return info, wrap("InterruptKernel", err)
}

// Restart replaces the kernel process with a fresh one (also bringing a DEAD kernel back) and
// returns once it is ready. The notebook is kept; cells that ran become STALE.
func (k *Kernel) Restart(ctx context.Context) (*cellgatev1.Kernel, error) {
	info, err := k.c.rpc.RestartKernel(ctx, &cellgatev1.RestartKernelRequest{KernelId: k.id})
	return info, wrap("RestartKernel", err)
}

// Shutdown shuts the kernel down and returns once its processes are reaped; its id is
// NOT_FOUND afterwards.
func (k *Kernel) Shutdown(ctx context.Context) error {
	_, err := k.c.rpc.ShutdownKernel(ctx, &cellgatev1.ShutdownKernelRequest{KernelId: k.id})
	return wrap("ShutdownKernel", err)
}

// ExportIpynb returns the notebook as an .ipynb file (nbformat 4.5 JSON), outputs included.
func (k *Kernel) ExportIpynb(ctx context.Context) ([]byte, error) {
	resp, err := k.c.rpc.ExportNotebook(ctx, &cellgatev1.ExportNotebookRequest{KernelId: k.id})
	if err != nil {
		return nil, wrap("ExportNotebook", err)
	}
	return resp.Ipynb, nil
}

// ImportIpynb imports the cells of an .ipynb file (nbformat 4) into the notebook, appending them
// or, with replace, replacing the notebook; nothing is run. Returns the resulting notebook
// (WithoutOutputs: without the outputs just sent).
func (k *Kernel) ImportIpynb(ctx context.Context, ipynb []byte, replace bool, opts ...NotebookOption) (*cellgatev1.Notebook, error) {
	c := notebookConfigOf(opts)
	nb, err := k.c.rpc.ImportNotebook(ctx, &cellgatev1.ImportNotebookRequest{KernelId: k.id, Ipynb: ipynb, Replace: replace, OmitOutputs: c.omitOutputs})
	return nb, wrap("ImportNotebook", err)
}

// StreamOutputs reads the kernel's EventLog: the retained events with seq > afterSeq, then, with
// follow, live events until ctx is cancelled or the kernel is shut down. afterSeq 0 starts at
// the oldest retained event; Kernel.Info's LastSeq or Notebook's LastSeq gives only what
// happens next. No RPC is made until the first Next; see EventStream for reconnection.
func (k *Kernel) StreamOutputs(ctx context.Context, afterSeq int64, follow bool, opts ...StreamOption) *EventStream {
	cfg := defaultStreamConfig()
	for _, o := range opts {
		o(&cfg)
	}
	return newEventStream(ctx, k, afterSeq, follow, cfg)
}
