// import.ova: deploys an OVA with govc's -options file (PropertyMapping, NetworkMapping,
// DiskProvisioning, InjectOvfEnv, PowerOn, WaitForIP), uploading its disks over the NFC lease.
package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"path"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Options is govc's import options file (`govc import.spec` prints one).
type Options struct {
	Name               *string
	DiskProvisioning   string
	IPAllocationPolicy string
	IPProtocol         string
	PropertyMapping    []types.KeyValue
	NetworkMapping     []struct{ Name, Network string }
	Annotation         string
	InjectOvfEnv       bool
	PowerOn            bool
	WaitForIP          bool
}

func matchGlob(pattern, name string) (bool, error) { return path.Match(pattern, name) }

// ovaEntry opens the file `name` of the OVA (a tar archive), or its first `.ovf` when name is "".
func ovaEntry(ova, name string) (io.Reader, int64, string, func(), error) {
	file, err := os.Open(ova)
	if err != nil {
		return nil, 0, "", nil, err
	}
	archive := tar.NewReader(file)
	for {
		header, err := archive.Next()
		if err == io.EOF {
			file.Close()
			return nil, 0, "", nil, fmt.Errorf("%s: no %q in the archive", ova, name)
		}
		if err != nil {
			file.Close()
			return nil, 0, "", nil, err
		}
		entry := path.Clean(header.Name)
		if (name == "" && strings.HasSuffix(entry, ".ovf")) || entry == path.Clean(name) {
			return archive, header.Size, entry, func() { file.Close() }, nil
		}
	}
}

func importOva(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("import.ova", flag.ExitOnError)
	optionsFile := flags.String("options", "", "options file (JSON)")
	name := flags.String("name", "", "the VM's name (default: the options' Name, or the OVF's)")
	folderPath := flags.String("folder", "", "the inventory folder")
	dsPath := flags.String("ds", "", "the datastore")
	poolPath := flags.String("pool", "", "the resource pool")
	flags.Parse(args)
	if flags.NArg() != 1 {
		return errors.New("usage: govc import.ova [-options FILE] [-name NAME] PATH_TO_OVA")
	}
	ova := flags.Arg(0)
	var opts Options
	if *optionsFile != "" {
		data, err := ioutil.ReadFile(*optionsFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &opts); err != nil {
			return fmt.Errorf("%s: %s", *optionsFile, err)
		}
	}
	reader, _, _, done, err := ovaEntry(ova, "")
	if err != nil {
		return err
	}
	descriptor, err := ioutil.ReadAll(reader)
	done()
	if err != nil {
		return err
	}
	client, err := connect(ctx, false)
	if err != nil {
		return err
	}
	f, err := finder(ctx, client)
	if err != nil {
		return err
	}
	pool, err := f.ResourcePoolOrDefault(ctx, *poolPath)
	if err != nil {
		return err
	}
	ds, err := f.DatastoreOrDefault(ctx, *dsPath)
	if err != nil {
		return err
	}
	var folder *object.Folder
	if *folderPath != "" {
		folder, err = f.Folder(ctx, *folderPath)
	} else {
		folder, err = f.DefaultFolder(ctx)
	}
	if err != nil {
		return err
	}
	entity := *name
	if entity == "" && opts.Name != nil {
		entity = *opts.Name
	}
	params := types.OvfCreateImportSpecParams{
		EntityName:         entity,
		DiskProvisioning:   opts.DiskProvisioning,
		IpAllocationPolicy: opts.IPAllocationPolicy,
		IpProtocol:         opts.IPProtocol,
		PropertyMapping:    opts.PropertyMapping,
	}
	for _, mapping := range opts.NetworkMapping {
		network, err := f.Network(ctx, mapping.Network)
		if err != nil {
			return err
		}
		params.NetworkMapping = append(params.NetworkMapping, types.OvfNetworkMapping{Name: mapping.Name, Network: network.Reference()})
	}
	spec, err := ovf.NewManager(client.Client).CreateImportSpec(ctx, string(descriptor), pool, ds, params)
	if err != nil {
		return err
	}
	if spec.Error != nil {
		return errors.New(spec.Error[0].LocalizedMessage)
	}
	for _, warning := range spec.Warning {
		fmt.Fprintf(os.Stderr, "Warning: %s\n", warning.LocalizedMessage)
	}
	if opts.Annotation != "" {
		if vmSpec, ok := spec.ImportSpec.(*types.VirtualMachineImportSpec); ok {
			vmSpec.ConfigSpec.Annotation = opts.Annotation
		}
	}
	lease, err := pool.ImportVApp(ctx, spec.ImportSpec, folder, nil)
	if err != nil {
		return err
	}
	info, err := lease.Wait(ctx, spec.FileItem)
	if err != nil {
		return err
	}
	updater := lease.StartUpdater(ctx, info)
	for _, item := range info.Items {
		fmt.Printf("Uploading %s... ", path.Base(item.Path))
		reader, size, _, done, err := ovaEntry(ova, item.Path)
		if err != nil {
			updater.Done()
			return err
		}
		err = lease.Upload(ctx, item, reader, soap.Upload{ContentLength: size})
		done()
		if err != nil {
			fmt.Println("Error")
			updater.Done()
			return err
		}
		fmt.Println("OK (100%)")
	}
	updater.Done()
	if err := lease.Complete(ctx); err != nil {
		return err
	}
	vm := object.NewVirtualMachine(client.Client, info.Entity)
	if opts.InjectOvfEnv {
		fmt.Println("Injecting OVF environment...")
		config := types.VirtualMachineConfigSpec{VAppConfig: &types.VmConfigSpec{OvfEnvironmentTransport: []string{"com.vmware.guestInfo"}}}
		task, err := vm.Reconfigure(ctx, config)
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			return err
		}
	}
	if opts.PowerOn {
		fmt.Println("Powering on VM...")
		task, err := vm.PowerOn(ctx)
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			return err
		}
		if opts.WaitForIP {
			fmt.Println("Waiting for IP address...")
			ip, err := vm.WaitForIP(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("Received IP address: %s\n", ip)
		}
	}
	return nil
}
