# The free-first bootstrap (deploy/terraform/README.md): one VM running k3s,
# then Kimberly's manifests applied to it with the same script the CD pipeline
# uses (deploy/k8s/deploy.sh). The datastores are external (managed free tiers
# or your own), reached through the kimberly-secrets Secret created here.

locals {
  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    k3s_version = var.k3s_version
  })
  # exactly one of the two modules has an instance (count)
  host = one(concat(module.oci_host, module.hetzner_host))
}

module "oci_host" {
  source = "./modules/oci-host"
  count  = var.cloud == "oci" ? 1 : 0

  name             = var.name
  compartment_ocid = var.oci_compartment_ocid
  image_ocid       = var.oci_image_ocid
  ocpus            = var.oci_ocpus
  memory_gb        = var.oci_memory_gb
  ssh_public_key   = var.ssh_public_key
  admin_cidrs      = var.admin_cidrs
  user_data        = local.user_data
}

module "hetzner_host" {
  source = "./modules/hetzner-host"
  count  = var.cloud == "hetzner" ? 1 : 0

  name           = var.name
  server_type    = var.hcloud_server_type
  location       = var.hcloud_location
  ssh_public_key = var.ssh_public_key
  admin_cidrs    = var.admin_cidrs
  user_data      = local.user_data
}

# Runs where terraform runs (needs ssh, kubectl and python3): waits for k3s,
# creates the namespace's kimberly-secrets, applies the overlay with the image.
# Re-runs when the host, the image, the overlay or a secret changes.
resource "terraform_data" "kimberly" {
  count = var.deploy_kimberly ? 1 : 0

  triggers_replace = {
    host    = local.host.public_ip
    image   = var.image
    overlay = var.overlay
    secrets = sha256(jsonencode(var.kimberly_secrets))
  }

  provisioner "local-exec" {
    command = "${path.module}/bootstrap.sh"
    environment = {
      HOST         = local.host.public_ip
      SSH_USER     = local.host.ssh_user
      SSH_KEY      = pathexpand(var.ssh_private_key_path)
      OVERLAY      = var.overlay
      IMAGE        = var.image
      SECRETS_JSON = jsonencode(var.kimberly_secrets)
    }
  }
}
