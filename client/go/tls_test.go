package cellgate

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, made in
// memory and written as PEM files for the server.
type testPKI struct {
	pool                      *x509.CertPool
	client                    tls.Certificate
	caFile, certFile, keyFile string
}

func newCertificate(t *testing.T, template *x509.Certificate, parent *x509.Certificate,
	parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = template, key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func makeTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	now := time.Now()
	ca, caKey, caPEM, _ := newCertificate(t, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	_, _, serverPEM, serverKey := newCertificate(t, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}, ca, caKey)
	_, _, clientPEM, clientKey := newCertificate(t, &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "test-client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}, ca, caKey)
	p := &testPKI{pool: x509.NewCertPool(), caFile: filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server.key")}
	p.pool.AddCert(ca)
	client, err := tls.X509KeyPair(clientPEM, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	p.client = client
	for path, data := range map[string][]byte{p.caFile: caPEM, p.certFile: serverPEM, p.keyFile: serverKey} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestMutualTLS(t *testing.T) {
	binary, err := serverBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testDir, "tls")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	pki := makeTestPKI(t, dir)
	tlsSrv, err := startServer(binary, dir, 780000+(os.Getpid()%1000)*8,
		"--max-kernels=4", "--tls-cert="+pki.certFile, "--tls-key="+pki.keyFile,
		"--tls-client-ca="+pki.caFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tlsSrv.stop(); err != nil {
			t.Error(err)
		}
	})
	ctx := testContext(t, 30*time.Second)

	withCert := dial(t, tlsSrv, WithTLS(&tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}))
	info, err := withCert.ServerInfo(ctx)
	if err != nil {
		t.Fatalf("ServerInfo over mutual TLS: %v", err)
	}
	if info.Version == "" {
		t.Errorf("ServerInfo has no version: %v", info)
	}

	// No client certificate, and plaintext: both refused at the handshake.
	_, err = dial(t, tlsSrv, WithTLS(&tls.Config{RootCAs: pki.pool})).ServerInfo(ctx)
	wantCode(t, err, codes.Unavailable)
	_, err = dial(t, tlsSrv).ServerInfo(ctx)
	wantCode(t, err, codes.Unavailable)
}
