package cellgate

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is the error every Client, Kernel and EventStream method returns for a failed RPC: the
// gRPC status code and message the server (or the gRPC runtime) gave, and the method that got it.
//
// Execution outcomes are not errors: an exception, a timeout or a dead kernel during a run is an
// ExecutionResult with an OK RPC. See docs/api.md §8 for which code means what.
//
// Test an error with errors.As, the Is* helpers, or errors.Is against the sentinel values:
//
//	if errors.Is(err, cellgate.ErrNotFound) { ... }
//	var e *cellgate.Error
//	if errors.As(err, &e) && e.Code == codes.InvalidArgument { fmt.Println(e.Field()) }
type Error struct {
	// Code is the gRPC status code, e.g. codes.NotFound.
	Code codes.Code
	// Message is the status message, e.g. "kernel_id: no kernel '0123…'".
	Message string
	// Method is the client method that failed, e.g. "RunCell"; empty on the sentinel values.
	Method string
}

// Error formats the error as "cellgate: Method: Code: Message".
func (e *Error) Error() string {
	if e.Method == "" {
		return fmt.Sprintf("cellgate: %s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("cellgate: %s: %s: %s", e.Method, e.Code, e.Message)
}

// Is reports whether target is an *Error sentinel (no Message, no Method) with the same Code, so
// that errors.Is(err, ErrNotFound) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t.Message != "" || t.Method != "" {
		return false
	}
	return t.Code == e.Code
}

// GRPCStatus returns the error as a gRPC status, so that status.Code(err) and status.FromError
// work on it.
func (e *Error) GRPCStatus() *status.Status {
	return status.New(e.Code, e.Message)
}

// fieldPrefix matches the field path that INVALID_ARGUMENT messages start with, e.g.
// "limits.address_space_bytes", "cells[3].outputs[1]" or `label_selector["bad key"]`.
var fieldPrefix = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])*(\.[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])*)*): `)

// Field returns the request field an INVALID_ARGUMENT (or other) message names at its start, e.g.
// "cell_id" for "cell_id: cell x is not a code cell", or "" if the message does not start with
// a field path.
func (e *Error) Field() string {
	m := fieldPrefix.FindStringSubmatch(e.Message)
	if m == nil {
		return ""
	}
	return m[1]
}

// Sentinel errors, one per gRPC code the server uses; compare with errors.Is.
var (
	ErrCancelled          = &Error{Code: codes.Canceled}
	ErrDeadlineExceeded   = &Error{Code: codes.DeadlineExceeded}
	ErrInvalidArgument    = &Error{Code: codes.InvalidArgument}
	ErrNotFound           = &Error{Code: codes.NotFound}
	ErrAlreadyExists      = &Error{Code: codes.AlreadyExists}
	ErrResourceExhausted  = &Error{Code: codes.ResourceExhausted}
	ErrFailedPrecondition = &Error{Code: codes.FailedPrecondition}
	ErrOutOfRange         = &Error{Code: codes.OutOfRange}
	ErrUnauthenticated    = &Error{Code: codes.Unauthenticated}
	ErrUnavailable        = &Error{Code: codes.Unavailable}
	ErrInternal           = &Error{Code: codes.Internal}
)

// Code returns the gRPC code of err: its *Error's Code, codes.OK for nil, codes.Unknown for an
// error that carries no code.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return status.Code(err)
}

// IsNotFound reports whether err is NOT_FOUND: unknown kernel (never existed, or shut down) or cell.
func IsNotFound(err error) bool { return Code(err) == codes.NotFound }

// IsInvalidArgument reports whether err is INVALID_ARGUMENT; Error.Field names the field.
func IsInvalidArgument(err error) bool { return Code(err) == codes.InvalidArgument }

// IsAlreadyExists reports whether err is ALREADY_EXISTS (AddCell with a cell_id already there).
func IsAlreadyExists(err error) bool { return Code(err) == codes.AlreadyExists }

// IsFailedPrecondition reports whether err is FAILED_PRECONDITION (e.g. the kernel is DEAD or
// SHUTTING_DOWN).
func IsFailedPrecondition(err error) bool { return Code(err) == codes.FailedPrecondition }

// IsResourceExhausted reports whether err is RESOURCE_EXHAUSTED (a server cap, or a message over
// a size limit).
func IsResourceExhausted(err error) bool { return Code(err) == codes.ResourceExhausted }

// IsOutOfRange reports whether err is OUT_OF_RANGE: StreamOutputs asked for events that were
// evicted (or not there yet). Resync from Kernel.Notebook and follow from its LastSeq.
func IsOutOfRange(err error) bool { return Code(err) == codes.OutOfRange }

// IsUnauthenticated reports whether err is UNAUTHENTICATED (missing or wrong token).
func IsUnauthenticated(err error) bool { return Code(err) == codes.Unauthenticated }

// IsUnavailable reports whether err is UNAVAILABLE (server draining or unreachable, or a kernel
// that failed to start).
func IsUnavailable(err error) bool { return Code(err) == codes.Unavailable }

// wrap turns an error from the generated client into an *Error naming method. A context error
// the gRPC runtime did not wrap becomes CANCELLED or DEADLINE_EXCEEDED.
func wrap(method string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if s, ok := status.FromError(err); ok {
		return &Error{Code: s.Code(), Message: s.Message(), Method: method}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return &Error{Code: codes.Canceled, Message: err.Error(), Method: method}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: codes.DeadlineExceeded, Message: err.Error(), Method: method}
	}
	return &Error{Code: codes.Unknown, Message: err.Error(), Method: method}
}
