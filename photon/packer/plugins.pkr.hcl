// plugins.pkr.hcl: the Packer version and plugin pmesh-controller.pkr.hcl is written for.
// `packer init .` installs the plugin. Kept apart from the template so that the template's
// own syntax can also be checked by older Packer releases, which reject this block.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    vsphere = {
      source  = "github.com/hashicorp/vsphere"
      version = ">= 1.2.0"
    }
  }
}
