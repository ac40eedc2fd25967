package cellgate

import (
	"time"

	cellgatev1 "cellgate/v1"
)

// AddCellOption configures Kernel.AddCell.
type AddCellOption interface {
	applyAddCell(*cellgatev1.AddCellRequest)
}

// EditCellOption configures Kernel.EditCell.
type EditCellOption interface {
	applyEditCell(*cellgatev1.EditCellRequest)
}

// CellOption configures both Kernel.AddCell and Kernel.EditCell.
type CellOption interface {
	AddCellOption
	EditCellOption
}

type addCellFunc func(*cellgatev1.AddCellRequest)

func (f addCellFunc) applyAddCell(r *cellgatev1.AddCellRequest) { f(r) }

type cellOption struct {
	add  func(*cellgatev1.AddCellRequest)
	edit func(*cellgatev1.EditCellRequest)
}

func (o cellOption) applyAddCell(r *cellgatev1.AddCellRequest)   { o.add(r) }
func (o cellOption) applyEditCell(r *cellgatev1.EditCellRequest) { o.edit(r) }

// WithCellID gives the new cell this id (nbformat 4.5: 1–64 characters of [a-zA-Z0-9-_]) instead
// of a generated one. Retrying AddCell with the same id is safe: it fails ALREADY_EXISTS.
func WithCellID(id string) AddCellOption {
	return addCellFunc(func(r *cellgatev1.AddCellRequest) { r.CellId = id })
}

// AtIndex inserts the new cell at index (0 .. cell count) instead of appending it.
func AtIndex(index int32) AddCellOption {
	return addCellFunc(func(r *cellgatev1.AddCellRequest) { r.Index = &index })
}

// WithCellType sets the cell's type (AddCell: CODE by default; EditCell: unchanged by default).
func WithCellType(t cellgatev1.CellType) CellOption {
	return cellOption{
		add:  func(r *cellgatev1.AddCellRequest) { r.CellType = t },
		edit: func(r *cellgatev1.EditCellRequest) { r.CellType = t },
	}
}

// WithMetadata sets the cell's nbformat metadata, JSON object text ("" = {}).
func WithMetadata(json string) CellOption {
	return cellOption{
		add:  func(r *cellgatev1.AddCellRequest) { r.Metadata = json },
		edit: func(r *cellgatev1.EditCellRequest) { r.Metadata = &json },
	}
}

// RunOption configures Kernel.RunCell and Kernel.Execute.
type RunOption interface {
	applyRun(*runConfig)
}

// RunAllOption configures Kernel.RunAll and Kernel.RunStale.
type RunAllOption interface {
	applyRunAll(*cellgatev1.RunAllRequest)
}

// TimeoutOption configures RunCell, Execute and RunAll.
type TimeoutOption interface {
	RunOption
	RunAllOption
}

type runConfig struct {
	timeoutMs int64
	onTimeout cellgatev1.OnTimeout
	cascade   cellgatev1.Cascade
}

type runFunc func(*runConfig)

func (f runFunc) applyRun(c *runConfig) { f(c) }

type runAllFunc func(*cellgatev1.RunAllRequest)

func (f runAllFunc) applyRunAll(r *cellgatev1.RunAllRequest) { f(r) }

type timeoutOption int64

func (t timeoutOption) applyRun(c *runConfig)                   { c.timeoutMs = int64(t) }
func (t timeoutOption) applyRunAll(r *cellgatev1.RunAllRequest) { r.TimeoutMs = int64(t) }

// WithTimeout bounds how long an execution may run once started (time queued does not count);
// for RunAll, each cell. 0 = the server's default. Rounded up to whole milliseconds. A run that
// takes longer ends EXECUTION_STATUS_TIMEOUT (interrupted, unless KeepRunningOnTimeout).
// A context deadline on RunCell or Execute is honoured the same way (docs/api.md §4.4).
func WithTimeout(d time.Duration) TimeoutOption {
	ms := int64(d / time.Millisecond)
	if d > 0 && d%time.Millisecond != 0 {
		ms++
	}
	return timeoutOption(ms)
}

// KeepRunningOnTimeout makes RunCell or Execute return TIMEOUT at the timeout but leave the
// execution running (follow it with StreamOutputs and WithExecutionFilter).
func KeepRunningOnTimeout() RunOption {
	return runFunc(func(c *runConfig) { c.onTimeout = cellgatev1.OnTimeout_ON_TIMEOUT_KEEP_RUNNING })
}

// WithCascade makes RunCell run other cells with it, following the dependency graph:
// CASCADE_DEPENDENTS runs the cell, then every cell depending on it; CASCADE_UPSTREAM first runs
// the cells it depends on that are not OK. Their results are in the reply's Cascade; a timeout
// is per cell. Execute ignores it.
func WithCascade(c cellgatev1.Cascade) RunOption {
	return runFunc(func(rc *runConfig) { rc.cascade = c })
}

// ContinueOnError makes RunAll (and RunStale) run every cell even after one ends ERROR or TIMEOUT (by default
// the first failure cancels the rest).
func ContinueOnError() RunAllOption {
	return runAllFunc(func(r *cellgatev1.RunAllRequest) {
		f := false
		r.StopOnError = &f
	})
}

// StreamOption configures Kernel.StreamOutputs.
type StreamOption func(*streamConfig)

type streamConfig struct {
	cellID         string
	executionID    string
	maxRetries     int
	initialBackoff time.Duration
	maxBackoff     time.Duration
}

func defaultStreamConfig() streamConfig {
	return streamConfig{maxRetries: 8, initialBackoff: 50 * time.Millisecond, maxBackoff: 2 * time.Second}
}

// WithCellFilter delivers only the events of this cell's executions (plus kernel_status and
// display_update events, which always pass).
func WithCellFilter(cellID string) StreamOption {
	return func(c *streamConfig) { c.cellID = cellID }
}

// WithExecutionFilter delivers only the events of this execution (plus kernel_status and
// display_update events).
func WithExecutionFilter(executionID string) StreamOption {
	return func(c *streamConfig) { c.executionID = executionID }
}

// WithReconnect sets how the stream resumes after UNAVAILABLE or RESOURCE_EXHAUSTED: at most
// maxRetries reconnections in a row without receiving an event (0 = never reconnect), waiting
// initialBackoff before the first, doubling up to maxBackoff. The default is 8, 50 ms, 2 s.
func WithReconnect(maxRetries int, initialBackoff, maxBackoff time.Duration) StreamOption {
	return func(c *streamConfig) {
		c.maxRetries = maxRetries
		c.initialBackoff = initialBackoff
		c.maxBackoff = maxBackoff
	}
}

// NotebookOption configures Kernel.Notebook and Kernel.ImportIpynb.
type NotebookOption func(*notebookConfig)

type notebookConfig struct {
	omitOutputs bool
}

// WithoutOutputs leaves the cells' outputs out of the notebook returned (GetNotebook's and
// ImportNotebook's omit_outputs): ids, sources, states, analyses and the graph only. An import
// stores the outputs all the same.
func WithoutOutputs() NotebookOption {
	return func(c *notebookConfig) { c.omitOutputs = true }
}

func notebookConfigOf(opts []NotebookOption) notebookConfig {
	var c notebookConfig
	for _, opt := range opts {
		opt(&c)
	}
	return c
}
