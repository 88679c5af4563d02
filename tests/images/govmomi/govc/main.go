// govc: the subset of govmomi's govc that pmesh's vSphere patterns and their tests use, with
// the real tool's command names, flags, environment and output, built from Debian's
// golang-github-vmware-govmomi-dev (which ships the library but not the govc command).
//
// Commands: about, about.cert, find, import.ova, vm.change, vm.destroy, vm.info, vm.ip,
// vm.power. Environment: GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD, GOVC_INSECURE,
// GOVC_TLS_KNOWN_HOSTS, GOVC_TLS_CA_CERTS, GOVC_DATACENTER. Credentials are read from the
// environment only, never from the command line.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type command func(ctx context.Context, args []string) error

var commands = map[string]command{
	"about":      about,
	"about.cert": aboutCert,
	"find":       findCmd,
	"import.ova": importOva,
	"vm.change":  vmChange,
	"vm.destroy": vmDestroy,
	"vm.info":    vmInfo,
	"vm.ip":      vmIP,
	"vm.power":   vmPower,
}

func main() {
	if len(os.Args) < 2 {
		names := make([]string, 0, len(commands))
		for name := range commands {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "Usage: govc <COMMAND> [COMMON OPTIONS] [PATH]...\n\nCommands: %s\n", strings.Join(names, ", "))
		os.Exit(1)
	}
	run, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "govc: unknown command \"%s\"\n", os.Args[1])
		os.Exit(1)
	}
	if err := run(context.Background(), os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "govc: %s\n", err)
		os.Exit(1)
	}
}

func envBool(name string) bool {
	value, _ := strconv.ParseBool(os.Getenv(name))
	return value
}

// targetURL is GOVC_URL with the scheme and /sdk path filled in, without credentials.
func targetURL() (*url.URL, error) {
	raw := os.Getenv("GOVC_URL")
	if raw == "" {
		return nil, errors.New("specify an ESX or vCenter URL in GOVC_URL")
	}
	u, err := soap.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	u.User = nil
	return u, nil
}

func connect(ctx context.Context, insecure bool) (*govmomi.Client, error) {
	u, err := targetURL()
	if err != nil {
		return nil, err
	}
	sc := soap.NewClient(u, insecure || envBool("GOVC_INSECURE"))
	if err := sc.LoadThumbprints(os.Getenv("GOVC_TLS_KNOWN_HOSTS")); err != nil {
		return nil, err
	}
	if file := os.Getenv("GOVC_TLS_CA_CERTS"); file != "" {
		if err := sc.SetRootCAs(file); err != nil {
			return nil, err
		}
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, err
	}
	client := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	user := url.UserPassword(os.Getenv("GOVC_USERNAME"), os.Getenv("GOVC_PASSWORD"))
	if err := client.Login(ctx, user); err != nil {
		return nil, err
	}
	return client, nil
}

func finder(ctx context.Context, client *govmomi.Client) (*find.Finder, error) {
	f := find.NewFinder(client.Client, true)
	dc, err := f.DatacenterOrDefault(ctx, os.Getenv("GOVC_DATACENTER"))
	if err != nil {
		return nil, err
	}
	f.SetDatacenter(dc)
	return f, nil
}

func about(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("about", flag.ExitOnError)
	insecure := flags.Bool("k", false, "skip verification of the server's certificate")
	flags.Parse(args)
	client, err := connect(ctx, *insecure)
	if err != nil {
		return err
	}
	info := client.ServiceContent.About
	tw := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "FullName:\t%s\n", info.FullName)
	fmt.Fprintf(tw, "Name:\t%s\n", info.Name)
	fmt.Fprintf(tw, "Vendor:\t%s\n", info.Vendor)
	fmt.Fprintf(tw, "Version:\t%s\n", info.Version)
	fmt.Fprintf(tw, "Build:\t%s\n", info.Build)
	fmt.Fprintf(tw, "OS type:\t%s\n", info.OsType)
	fmt.Fprintf(tw, "API type:\t%s\n", info.ApiType)
	fmt.Fprintf(tw, "API version:\t%s\n", info.ApiVersion)
	fmt.Fprintf(tw, "Product ID:\t%s\n", info.ProductLineId)
	fmt.Fprintf(tw, "UUID:\t%s\n", info.InstanceUuid)
	return tw.Flush()
}

// aboutCert prints the server's certificate thumbprint as a GOVC_TLS_KNOWN_HOSTS line.
func aboutCert(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("about.cert", flag.ExitOnError)
	insecure := flags.Bool("k", false, "skip verification of the server's certificate")
	thumbprint := flags.Bool("thumbprint", false, "print the thumbprint as a known_hosts line")
	flags.Parse(args)
	u, err := targetURL()
	if err != nil {
		return err
	}
	address := u.Host
	if u.Port() == "" {
		address = net.JoinHostPort(u.Hostname(), "443")
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", address, &tls.Config{InsecureSkipVerify: *insecure, ServerName: u.Hostname()})
	if err != nil {
		return err
	}
	defer conn.Close()
	cert := conn.ConnectionState().PeerCertificates[0]
	if *thumbprint {
		fmt.Printf("%s %s\n", u.Host, soap.ThumbprintSHA1(cert))
		return nil
	}
	fmt.Printf("Subject: %s\nIssuer: %s\nExpires: %s\nThumbprint: %s\n", cert.Subject, cert.Issuer, cert.NotAfter.Format(time.RFC3339), soap.ThumbprintSHA1(cert))
	return nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// virtualMachines finds each named VM (a name or an inventory path); a name that matches
// nothing is an error, as in govc.
func virtualMachines(ctx context.Context, f *find.Finder, names []string) ([]*object.VirtualMachine, error) {
	var vms []*object.VirtualMachine
	for _, name := range names {
		found, err := f.VirtualMachineList(ctx, name)
		if err != nil {
			return nil, err
		}
		vms = append(vms, found...)
	}
	return vms, nil
}

func vmChange(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("vm.change", flag.ExitOnError)
	name := flags.String("vm", "", "the virtual machine")
	var extra stringList
	flags.Var(&extra, "e", "ExtraConfig <key>=<value> (repeatable)")
	cpus := flags.Int("c", 0, "number of CPUs")
	memory := flags.Int64("m", 0, "memory in MB")
	flags.Parse(args)
	client, err := connect(ctx, false)
	if err != nil {
		return err
	}
	f, err := finder(ctx, client)
	if err != nil {
		return err
	}
	vm, err := f.VirtualMachine(ctx, *name)
	if err != nil {
		return err
	}
	spec := types.VirtualMachineConfigSpec{NumCPUs: int32(*cpus), MemoryMB: *memory}
	for _, pair := range extra {
		kv := strings.SplitN(pair, "=", 2)
		if len(kv) != 2 {
			return fmt.Errorf("invalid ExtraConfig %q: expected key=value", pair)
		}
		spec.ExtraConfig = append(spec.ExtraConfig, &types.OptionValue{Key: kv[0], Value: kv[1]})
	}
	task, err := vm.Reconfigure(ctx, spec)
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

func vmPower(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("vm.power", flag.ExitOnError)
	on := flags.Bool("on", false, "power on")
	off := flags.Bool("off", false, "power off")
	flags.Bool("force", false, "force (accepted for compatibility)")
	flags.Parse(args)
	if *on == *off {
		return errors.New("specify exactly one of -on and -off")
	}
	client, err := connect(ctx, false)
	if err != nil {
		return err
	}
	f, err := finder(ctx, client)
	if err != nil {
		return err
	}
	vms, err := virtualMachines(ctx, f, flags.Args())
	if err != nil {
		return err
	}
	for _, vm := range vms {
		var task *object.Task
		if *on {
			fmt.Printf("Powering on %s... ", vm.Reference())
			task, err = vm.PowerOn(ctx)
		} else {
			fmt.Printf("Powering off %s... ", vm.Reference())
			task, err = vm.PowerOff(ctx)
		}
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			fmt.Println("Error")
			return err
		}
		fmt.Println("OK")
	}
	return nil
}

func vmDestroy(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("vm.destroy", flag.ExitOnError)
	flags.Parse(args)
	client, err := connect(ctx, false)
	if err != nil {
		return err
	}
	f, err := finder(ctx, client)
	if err != nil {
		return err
	}
	vms, err := virtualMachines(ctx, f, flags.Args())
	if err != nil {
		return err
	}
	for _, vm := range vms {
		// Like govc: power off first, ignoring an error (it may be off already).
		if task, err := vm.PowerOff(ctx); err == nil {
			_ = task.Wait(ctx)
		}
		task, err := vm.Destroy(ctx)
		if err != nil {
			return err
		}
		if err := task.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

func vmInfo(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("vm.info", flag.ExitOnError)
	extra := flags.Bool("e", false, "show ExtraConfig")
	asJSON := flags.Bool("json", false, "print the managed objects as JSON")
	flags.Parse(args)
	client, err := connect(ctx, false)
	if err != nil {
		return err
	}
	f, err := finder(ctx, client)
	if err != nil {
		return err
	}
	vms, err := virtualMachines(ctx, f, flags.Args())
	if err != nil {
		return err
	}
	refs := make([]types.ManagedObjectReference, 0, len(vms))
	for _, vm := range vms {
		refs = append(refs, vm.Reference())
	}
	var mvms []mo.VirtualMachine
	if len(refs) != 0 {
		if err := property.DefaultCollector(client.Client).Retrieve(ctx, refs, nil, &mvms); err != nil {
			return err
		}
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"VirtualMachines": mvms})
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', 0)
	for idx, vm := range mvms {
		path := vms[idx].InventoryPath
		fmt.Fprintf(tw, "Name:\t%s\n", vm.Name)
		fmt.Fprintf(tw, "  Path:\t%s\n", path)
		if vm.Config != nil {
			fmt.Fprintf(tw, "  UUID:\t%s\n", vm.Config.Uuid)
			fmt.Fprintf(tw, "  Guest name:\t%s\n", vm.Config.GuestFullName)
			fmt.Fprintf(tw, "  Memory:\t%dMB\n", vm.Config.Hardware.MemoryMB)
			fmt.Fprintf(tw, "  CPU:\t%d vCPU(s)\n", vm.Config.Hardware.NumCPU)
		}
		fmt.Fprintf(tw, "  Power state:\t%s\n", vm.Runtime.PowerState)
		if vm.Guest != nil {
			fmt.Fprintf(tw, "  IP address:\t%s\n", vm.Guest.IpAddress)
		}
		if *extra && vm.Config != nil {
			fmt.Fprintf(tw, "  ExtraConfig:\n")
			for _, option := range vm.Config.ExtraConfig {
				value := option.GetOptionValue()
				fmt.Fprintf(tw, "    %s:\t%v\n", value.Key, value.Value)
			}
		}
	}
	return tw.Flush()
}

func vmIP(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("vm.ip", flag.ExitOnError)
	wait := flags.Duration("wait", time.Hour, "how long to wait for the guest's IP")
	flags.Bool("v4", false, "IPv4 only (accepted for compatibility)")
	flags.Parse(args)
	client, err := connect(ctx, false)
	if err != nil {
		return err
	}
	f, err := finder(ctx, client)
	if err != nil {
		return err
	}
	vms, err := virtualMachines(ctx, f, flags.Args())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(*wait)
	for _, vm := range vms {
		for {
			var mvm mo.VirtualMachine
			if err := vm.Properties(ctx, vm.Reference(), []string{"guest.ipAddress"}, &mvm); err != nil {
				return err
			}
			if mvm.Guest != nil && mvm.Guest.IpAddress != "" {
				fmt.Println(mvm.Guest.IpAddress)
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: no IP address after %s", vm.InventoryPath, *wait)
			}
			time.Sleep(time.Second)
		}
	}
	return nil
}

// findCmd prints the inventory path of each object of the given type under the root, whose
// name matches -name (a glob), sorted.
func findCmd(ctx context.Context, args []string) error {
	root := "/"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		root, args = args[0], args[1:]
	}
	flags := flag.NewFlagSet("find", flag.ExitOnError)
	kind := flags.String("type", "m", "the object type (m: VirtualMachine)")
	name := flags.String("name", "*", "a glob the object's name matches")
	flags.Parse(args)
	if *kind != "m" {
		return fmt.Errorf("this govc finds only -type m")
	}
	client, err := connect(ctx, false)
	if err != nil {
		return err
	}
	f := find.NewFinder(client.Client, true)
	container, err := f.ManagedObjectList(ctx, root)
	if err != nil {
		return err
	}
	if len(container) == 0 {
		return fmt.Errorf("%s not found", root)
	}
	manager := view.NewManager(client.Client)
	cv, err := manager.CreateContainerView(ctx, container[0].Object.Reference(), []string{"VirtualMachine"}, true)
	if err != nil {
		return err
	}
	defer cv.Destroy(ctx)
	var vms []mo.VirtualMachine
	if err := cv.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil {
		return err
	}
	var paths []string
	for _, vm := range vms {
		if ok, _ := matchGlob(*name, vm.Name); !ok {
			continue
		}
		path, err := find.InventoryPath(ctx, client.Client, vm.Self)
		if err != nil {
			return err
		}
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		fmt.Println(path)
	}
	return nil
}
