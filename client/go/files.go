package cellgate

import (
	"context"
	"errors"
	"io"
	"time"

	cellgatev1 "cellgate/v1"
)

const uploadChunkBytes = 1 << 20

// UploadFile writes what r holds to path in the kernel's working directory (relative to it), in
// 1 MiB chunks; the kernel's code sees it at once. Nothing appears under path unless the whole
// upload arrived. An existing file is replaced only with overwrite (else AlreadyExists). size,
// if known (else 0), is checked against the server's caps before any byte is sent.
func (k *Kernel) UploadFile(ctx context.Context, path string, r io.Reader, size int64, overwrite bool) (*cellgatev1.FileInfo, error) {
	// Ends the call on every way out: an upload not finished by CloseAndRecv writes nothing.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := k.c.rpc.UploadFile(ctx)
	if err != nil {
		return nil, wrap("UploadFile", err)
	}
	header := &cellgatev1.UploadFileRequest{Part: &cellgatev1.UploadFileRequest_Header{
		Header: &cellgatev1.UploadFileHeader{KernelId: k.id, Path: path, Overwrite: overwrite, Size: size},
	}}
	if err := stream.Send(header); err != nil {
		_, err = stream.CloseAndRecv() // the server's reason
		return nil, wrap("UploadFile", err)
	}
	buf := make([]byte, uploadChunkBytes)
	for {
		n, readErr := io.ReadFull(r, buf)
		if n > 0 {
			chunk := &cellgatev1.UploadFileRequest{Part: &cellgatev1.UploadFileRequest_Chunk{Chunk: buf[:n]}}
			if err := stream.Send(chunk); err != nil {
				_, err = stream.CloseAndRecv()
				return nil, wrap("UploadFile", err)
			}
		}
		if errors.Is(readErr, io.EOF) || errors.Is(readErr, io.ErrUnexpectedEOF) {
			break
		}
		if readErr != nil {
			return nil, readErr
		}
	}
	end := &cellgatev1.UploadFileRequest{Part: &cellgatev1.UploadFileRequest_End{End: &cellgatev1.UploadFileEnd{}}}
	if err := stream.Send(end); err != nil && !errors.Is(err, io.EOF) {
		return nil, wrap("UploadFile", err)
	}
	info, err := stream.CloseAndRecv()
	return info, wrap("UploadFile", err)
}

// DownloadFile copies a regular file of the kernel's working directory into w and returns what
// the file was when it was opened.
func (k *Kernel) DownloadFile(ctx context.Context, path string, w io.Writer) (*cellgatev1.FileInfo, error) {
	stream, err := k.c.rpc.DownloadFile(ctx, &cellgatev1.DownloadFileRequest{KernelId: k.id, Path: path})
	if err != nil {
		return nil, wrap("DownloadFile", err)
	}
	var info *cellgatev1.FileInfo
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return info, nil
		}
		if err != nil {
			return nil, wrap("DownloadFile", err)
		}
		if info == nil {
			info = chunk.Info
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return nil, err
		}
	}
}

// ListFiles lists a directory of the kernel's workspace ("" = its working directory), sorted by
// path; recursive also lists what every directory below holds.
func (k *Kernel) ListFiles(ctx context.Context, path string, recursive bool) (*cellgatev1.ListFilesResponse, error) {
	res, err := k.c.rpc.ListFiles(ctx, &cellgatev1.ListFilesRequest{KernelId: k.id, Path: path, Recursive: recursive})
	return res, wrap("ListFiles", err)
}

// DeleteFile deletes a file, symbolic link or directory of the kernel's workspace (a directory
// that is not empty only with recursive).
func (k *Kernel) DeleteFile(ctx context.Context, path string, recursive bool) error {
	_, err := k.c.rpc.DeleteFile(ctx, &cellgatev1.DeleteFileRequest{KernelId: k.id, Path: path, Recursive: recursive})
	return wrap("DeleteFile", err)
}

// TransferVariable copies the value of name in one Python kernel to asName ("" = name) in
// another, with pickle. timeout bounds how long each kernel may keep it waiting (0 = the
// server's default). Unpickling can run code the pickle names: transfer only from kernels you
// would trust to run code in the target.
func (c *Client) TransferVariable(ctx context.Context, fromKernelID, name, toKernelID, asName string, timeout time.Duration) (*cellgatev1.TransferVariableResponse, error) {
	res, err := c.rpc.TransferVariable(ctx, &cellgatev1.TransferVariableRequest{
		FromKernelId: fromKernelID, Name: name, ToKernelId: toKernelID, AsName: asName,
		TimeoutMs: timeout.Milliseconds(),
	})
	return res, wrap("TransferVariable", err)
}
