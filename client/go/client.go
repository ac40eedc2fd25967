// Package cellgate is the Go client of cellgate, a headless gRPC gateway to Jupyter kernels.
//
// Dial a server, start a kernel, add cells and run them:
//
//	c, err := cellgate.Dial(ctx, "127.0.0.1:50051")
//	k, err := c.StartKernel(ctx, nil)
//	cell, err := k.AddCell(ctx, "print('hi'); 6 * 7")
//	res, err := k.RunCell(ctx, cell.CellId)
//	fmt.Print(res.Text) // "hi\n42\n"
//
// Every method takes a context.Context and returns the generated messages of package
// cellgate/v1 (imported as cellgatev1). Failed RPCs return an *Error (see IsNotFound and the
// other helpers); execution outcomes (an exception, a timeout, a dead kernel) are
// ExecutionResult.Status, never errors. Kernel.StreamOutputs returns an EventStream that resumes
// after a dropped connection or a cut-off without losing or repeating an event.
//
// The behaviour of every RPC is described in docs/api.md and proto/cellgate/v1/*.proto.
package cellgate

import (
	"context"
	"crypto/tls"
	"math"

	cellgatev1 "cellgate/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Option configures Dial.
type Option func(*dialConfig)

type dialConfig struct {
	token       string
	tls         *tls.Config
	dialOptions []grpc.DialOption
}

// WithToken makes every call carry the metadata "authorization: Bearer <token>", for a server
// run with --auth-token-file. The token is sent over plaintext connections too: keep such
// servers on loopback or a unix socket, or serve TLS (see WithTLS).
func WithToken(token string) Option {
	return func(c *dialConfig) { c.token = token }
}

// WithTLS connects over TLS, for a server run with --tls-cert and --tls-key: cfg.RootCAs
// holds the CA that signed the server's certificate (nil: the system's roots), and
// cfg.Certificates this client's certificate for a server that also has --tls-client-ca
// (mutual TLS).
func WithTLS(cfg *tls.Config) Option {
	return func(c *dialConfig) { c.tls = cfg }
}

// WithDialOptions adds gRPC dial options, applied after the client's defaults (plaintext
// transport, unlimited receive message size), so they can override them: e.g.
// grpc.WithBlock(), grpc.WithTransportCredentials(...), grpc.WithInitialWindowSize(...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *dialConfig) { c.dialOptions = append(c.dialOptions, opts...) }
}

// bearerToken is per-RPC credentials that allow an insecure transport.
type bearerToken string

func (t bearerToken) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (t bearerToken) RequireTransportSecurity() bool { return false }

// Client is a connection to one cellgate server. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	rpc  cellgatev1.KernelGatewayClient
}

// Dial connects to a cellgate server at target: "HOST:PORT", or "unix:/path" for a unix socket.
// Like grpc.DialContext it does not wait for the connection unless grpc.WithBlock() is given
// through WithDialOptions; the first RPC waits for it or fails UNAVAILABLE.
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
	transport := grpc.WithInsecure()
	if cfg.tls != nil {
		transport = grpc.WithTransportCredentials(credentials.NewTLS(cfg.tls))
	}
	dopts := []grpc.DialOption{
		transport,
		// Results and notebooks can be large (8 MiB of outputs per execution by default).
		// Codec: see its comment (Debian's grpc-go 1.33 with golang/protobuf 1.3).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.ForceCodec(Codec{})),
	}
	if cfg.token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearerToken(cfg.token)))
	}
	dopts = append(dopts, cfg.dialOptions...)
	conn, err := grpc.DialContext(ctx, target, dopts...)
	if err != nil {
		return nil, wrap("Dial", err)
	}
	return NewClient(conn), nil
}

// NewClient makes a Client on a connection the caller dialled itself. Close closes conn. Every
// call of the Client uses Codec; the connection's receive size limit applies (raise it with
// grpc.MaxCallRecvMsgSize: results and notebooks can exceed gRPC's default of 4 MiB).
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{conn: conn, rpc: cellgatev1.NewKernelGatewayClient(codecConn{conn})}
}

// codecConn makes every call on a connection use Codec (unless the call names another codec).
type codecConn struct{ cc grpc.ClientConnInterface }

func (c codecConn) Invoke(ctx context.Context, method string, args, reply interface{}, opts ...grpc.CallOption) error {
	return c.cc.Invoke(ctx, method, args, reply, append([]grpc.CallOption{grpc.ForceCodec(Codec{})}, opts...)...)
}

func (c codecConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.cc.NewStream(ctx, desc, method, append([]grpc.CallOption{grpc.ForceCodec(Codec{})}, opts...)...)
}

// Close closes the connection. Kernels keep running on the server.
func (c *Client) Close() error {
	return c.conn.Close()
}

// Conn returns the underlying gRPC connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// RPC returns the generated KernelGateway client, for calls this package does not wrap. Its
// calls use Codec.
func (c *Client) RPC() cellgatev1.KernelGatewayClient { return c.rpc }

// StartKernelOptions is what StartKernel asks for; the zero value (or nil) starts the server's
// default kernelspec with the server's default limits and an empty notebook.
type StartKernelOptions struct {
	// KernelSpec names the kernelspec ("" = the server's default, "python3" unless configured).
	KernelSpec string
	// Env adds environment variables to the kernel's (some names are refused; see docs/api.md).
	Env map[string]string
	// Limits tightens the server's default resource limits (0 = default); nil = all defaults.
	Limits *cellgatev1.ResourceLimits
	// Labels to find the kernel by with ListKernels.
	Labels map[string]string
	// NotebookIpynb is an optional .ipynb (nbformat 4) whose cells become the notebook; nothing
	// is run.
	NotebookIpynb []byte
	// IdleTimeoutSeconds: 0 = the server's default.
	IdleTimeoutSeconds int32
}

// StartKernel starts a kernel and returns once it is ready (IDLE). opts may be nil.
func (c *Client) StartKernel(ctx context.Context, opts *StartKernelOptions) (*Kernel, error) {
	req := &cellgatev1.StartKernelRequest{}
	if opts != nil {
		req.KernelSpec = opts.KernelSpec
		req.Env = opts.Env
		req.Limits = opts.Limits
		req.Labels = opts.Labels
		req.NotebookIpynb = opts.NotebookIpynb
		req.IdleTimeoutSeconds = opts.IdleTimeoutSeconds
	}
	return c.StartKernelRequest(ctx, req)
}

// StartKernelRequest is StartKernel with the proto request as is.
func (c *Client) StartKernelRequest(ctx context.Context, req *cellgatev1.StartKernelRequest) (*Kernel, error) {
	k, err := c.rpc.StartKernel(ctx, req)
	if err != nil {
		return nil, wrap("StartKernel", err)
	}
	return &Kernel{c: c, id: k.KernelId}, nil
}

// Kernel returns a handle on the kernel with this id, without any RPC: methods on it fail
// NOT_FOUND if the server does not hold it.
func (c *Client) Kernel(id string) *Kernel {
	return &Kernel{c: c, id: id}
}

// ListKernels lists the server's kernels (in any state) that have every label of selector with
// exactly that value; a nil or empty selector lists all.
func (c *Client) ListKernels(ctx context.Context, selector map[string]string) ([]*cellgatev1.Kernel, error) {
	resp, err := c.rpc.ListKernels(ctx, &cellgatev1.ListKernelsRequest{LabelSelector: selector})
	if err != nil {
		return nil, wrap("ListKernels", err)
	}
	return resp.Kernels, nil
}

// KernelSpecs lists the kernelspecs StartKernel accepts, and the default one's name.
func (c *Client) KernelSpecs(ctx context.Context) ([]*cellgatev1.KernelSpec, string, error) {
	resp, err := c.rpc.ListKernelSpecs(ctx, &cellgatev1.ListKernelSpecsRequest{})
	if err != nil {
		return nil, "", wrap("ListKernelSpecs", err)
	}
	return resp.KernelSpecs, resp.DefaultKernelSpec, nil
}

// ServerInfo returns the server's version, sandbox layers, caps, defaults and kernel counts.
func (c *Client) ServerInfo(ctx context.Context) (*cellgatev1.ServerInfo, error) {
	info, err := c.rpc.GetServerInfo(ctx, &cellgatev1.GetServerInfoRequest{})
	if err != nil {
		return nil, wrap("GetServerInfo", err)
	}
	return info, nil
}
