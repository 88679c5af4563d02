// pmesh-controller.pkr.hcl: builds the pmesh pattern-controller VM on vSphere from the PhotonOS
// ISO and photon/ks.json, installs the pmesh payload over SSH, and exports it as an OVF. The
// OVF properties the first boot reads are added afterwards with open-vmdk's ova-compose and
// ova-environment.yaml (see photon/README.md, "Building the OVA").
//
// The required Packer version and the vsphere plugin are declared in plugins.pkr.hcl; run
// `packer init .` once, then, from this directory:
//   packer build -var-file=my.pkrvars.hcl .
//
// The VM: EFI, vmwarePhoton64Guest, one paravirtual SCSI controller with two thin disks
// (sda: the OS; sdb: /var/lib/pmesh-agent, the artifact cache and the agent's state), a SATA
// CD-ROM, one vmxnet3 NIC.

// ---- vCenter connection -------------------------------------------------------------------

variable "vcenter_server" {
  type        = string
  description = "vCenter host name or address."
}

variable "vcenter_username" {
  type        = string
  description = "vCenter user allowed to create VMs and export them."
}

variable "vcenter_password" {
  type        = string
  sensitive   = true
  description = "That user's password."
}

variable "vcenter_insecure" {
  type        = bool
  default     = false
  description = "Skip the vCenter certificate check (labs with self-signed certificates)."
}

variable "datacenter" {
  type = string
}

variable "cluster" {
  type = string
}

variable "datastore" {
  type = string
}

variable "network" {
  type        = string
  description = "Port group the VM's NIC joins during the build; it needs DHCP."
}

variable "folder" {
  type    = string
  default = ""
}

// ---- Installation media and credentials -----------------------------------------------------

variable "iso_paths" {
  type        = list(string)
  description = "The Photon OS 5 (or 4) full ISO on a datastore, e.g. [\"[datastore1] iso/photon-5.0-dde71ec57.x86_64.iso\"]."
}

variable "root_password" {
  type        = string
  sensitive   = true
  description = "Root password of the built VM; Packer logs in with it to provision."
}

variable "root_password_crypted" {
  type        = string
  sensitive   = true
  description = "The same password as a SHA-512 crypt hash (openssl passwd -6); it replaces the kickstart's placeholder."
}

variable "agent_binary" {
  type        = string
  default     = ""
  description = "Path of the pmesh-agent binary to install; empty: target/release/pmesh-agent of this checkout. It must run on Photon's glibc."
}

// ---- The VM ---------------------------------------------------------------------------------

variable "vm_name" {
  type    = string
  default = "pmesh-controller"
}

variable "vm_version" {
  type        = number
  default     = 14
  description = "Virtual hardware version; 14 deploys on ESXi 6.7 and later."
}

variable "cpus" {
  type    = number
  default = 2
}

variable "memory_mb" {
  type    = number
  default = 4096
}

variable "os_disk_mb" {
  type    = number
  default = 16384
}

variable "cache_disk_mb" {
  type        = number
  default     = 102400
  description = "The artifact cache: vendor OVAs and ISOs land here, so size it for them."
}

variable "output_directory" {
  type    = string
  default = "output"
}

locals {
  // The kickstart, with the root password's hash in place of its placeholder, served to the
  // installer over Packer's HTTP server.
  kickstart    = replace(file("${path.root}/../ks.json"), "!PMESH_ROOT_PASSWORD_CRYPTED", var.root_password_crypted)
  payload      = "/tmp/pmesh-payload"
  agent_binary = var.agent_binary != "" ? var.agent_binary : "${path.root}/../../target/release/pmesh-agent"
}

source "vsphere-iso" "pmesh-controller" {
  vcenter_server      = var.vcenter_server
  username            = var.vcenter_username
  password            = var.vcenter_password
  insecure_connection = var.vcenter_insecure
  datacenter          = var.datacenter
  cluster             = var.cluster
  datastore           = var.datastore
  folder              = var.folder

  vm_name       = var.vm_name
  vm_version    = var.vm_version
  guest_os_type = "vmwarePhoton64Guest"
  firmware      = "efi"
  CPUs          = var.cpus
  RAM           = var.memory_mb
  cdrom_type    = "sata"

  // One paravirtual controller, two disks: the kickstart installs the OS on sda and formats
  // sdb as /var/lib/pmesh-agent.
  disk_controller_type = ["pvscsi"]
  storage {
    disk_size             = var.os_disk_mb
    disk_thin_provisioned = true
    disk_controller_index = 0
  }
  storage {
    disk_size             = var.cache_disk_mb
    disk_thin_provisioned = true
    disk_controller_index = 0
  }
  network_adapters {
    network      = var.network
    network_card = "vmxnet3"
  }

  iso_paths    = var.iso_paths
  http_content = { "/ks.json" = local.kickstart }
  remove_cdrom = true

  // Photon's ISO boots into GRUB under EFI: open its command line and boot the installer with
  // the kickstart. insecure_installation=1 lets the installer fetch it over plain HTTP.
  boot_wait = "3s"
  boot_command = [
    "<esc><wait>c<wait>",
    "linux /isolinux/vmlinuz root=/dev/ram0 loglevel=3 insecure_installation=1 ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.json photon.media=cdrom<enter>",
    "initrd /isolinux/initrd.img<enter>",
    "boot<enter>",
  ]

  communicator     = "ssh"
  ssh_username     = "root"
  ssh_password     = var.root_password
  ssh_timeout      = "45m"
  shutdown_command = "shutdown -P now"

  export {
    name             = var.vm_name
    force            = true
    output_directory = var.output_directory
  }
}

build {
  sources = ["source.vsphere-iso.pmesh-controller"]

  provisioner "shell" {
    inline = ["mkdir -p ${local.payload}"]
  }

  provisioner "file" {
    source      = local.agent_binary
    destination = "${local.payload}/pmesh-agent"
  }
  provisioner "file" {
    source      = "${path.root}/../../systemd/pmesh-agent.service"
    destination = "${local.payload}/pmesh-agent.service"
  }
  provisioner "file" {
    source      = "${path.root}/../../systemd/pmesh.sysusers"
    destination = "${local.payload}/pmesh.sysusers"
  }
  provisioner "file" {
    source      = "${path.root}/../firstboot/pmesh-firstboot.sh"
    destination = "${local.payload}/pmesh-firstboot.sh"
  }
  provisioner "file" {
    source      = "${path.root}/../firstboot/pmesh-firstboot.service"
    destination = "${local.payload}/pmesh-firstboot.service"
  }
  provisioner "file" {
    source      = "${path.root}/../firewall/pmesh-firewall.sh"
    destination = "${local.payload}/pmesh-firewall.sh"
  }
  provisioner "file" {
    source      = "${path.root}/../install-appliance.sh"
    destination = "${local.payload}/install-appliance.sh"
  }

  // Install the payload, then seal the image: root over SSH off again (the kickstart turned it
  // on for this build), no payload left behind, and an empty machine-id so that every deployed
  // copy gets its own (networkd derives its DHCP client id from it).
  provisioner "shell" {
    inline = [
      "bash ${local.payload}/install-appliance.sh ${local.payload}",
      "rm -rf ${local.payload}",
      "sed -i 's/^PermitRootLogin yes$/PermitRootLogin no/' /etc/ssh/sshd_config",
      "truncate -s 0 /etc/machine-id",
    ]
  }
}
