// vcsim: the govmomi vCenter simulator (a VPX model: one datacenter, a cluster of hosts,
// datastores, networks) served over HTTPS with a certificate made at start, so every run has
// its own thumbprint to pin. The login is -username and $VCSIM_PASSWORD. Built from Debian's golang-github-vmware-govmomi-dev, which ships
// the simulator package but no vcsim command.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

func certificate(names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	template := x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	for _, name := range names {
		if ip := net.ParseIP(name); ip != nil {
			template.IPAddresses = append(template.IPAddresses, ip)
		} else {
			template.DNSNames = append(template.DNSNames, name)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func main() {
	listen := flag.String("l", "0.0.0.0:443", "address to listen on")
	names := flag.String("names", "vcsim,localhost,127.0.0.1", "comma-separated names and addresses the certificate is for")
	user := flag.String("username", "user", "the login's user name")
	hosts := flag.Int("host", 3, "hosts per cluster")
	vms := flag.Int("vm", 0, "VMs per host (0: none, so the inventory holds only what tests create)")
	certOut := flag.String("cert", "/tmp/vcsim.pem", "where to write the certificate (PEM)")
	flag.Parse()
	// The password comes from the environment, so that it is on no command line.
	password := os.Getenv("VCSIM_PASSWORD")
	if password == "" {
		password = "pass"
	}

	model := simulator.VPX()
	model.Host = 0
	model.ClusterHost = *hosts
	model.Machine = *vms
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	cert, err := certificate(strings.Split(*names, ","))
	if err != nil {
		log.Fatal(err)
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*user, password)}
	server := model.Service.NewServer()
	sum := sha1.Sum(cert.Certificate[0])
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	pemFile, err := os.Create(*certOut)
	if err == nil {
		pem.Encode(pemFile, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
		pemFile.Close()
	}
	// The line tests wait for: the server answers from here on.
	fmt.Printf("vcsim: listening on %s thumbprint %s\n", server.URL.Host, strings.Join(parts, ":"))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	server.Close()
	model.Remove()
}
