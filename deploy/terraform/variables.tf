# --- Where the k3s host runs ---------------------------------------------------

variable "cloud" {
  description = "Provider of the k3s host: \"oci\" (Oracle Cloud Always Free, an Ampere A1 VM) or \"hetzner\" (a small paid VM)."
  type        = string
  default     = "oci"

  validation {
    condition     = contains(["oci", "hetzner"], var.cloud)
    error_message = "cloud must be \"oci\" or \"hetzner\"."
  }
}

variable "name" {
  description = "Name of the host and prefix of its network resources."
  type        = string
  default     = "kimberly"
}

variable "ssh_public_key" {
  description = "Public key allowed to log in as the image's default user (ubuntu on OCI, root on Hetzner)."
  type        = string
}

variable "ssh_private_key_path" {
  description = "Matching private key; used once to fetch the kubeconfig from the host."
  type        = string
  default     = "~/.ssh/id_ed25519"
}

variable "admin_cidrs" {
  description = "Addresses allowed to reach SSH (22), through which kubectl reaches the API. Keep it narrow."
  type        = list(string)
}

variable "k3s_version" {
  description = "k3s release installed by cloud-init (a channel name such as \"stable\" also works)."
  type        = string
  default     = "v1.33.5+k3s1"
}

# --- Oracle Cloud (cloud = "oci") -------------------------------------------------

variable "oci_tenancy_ocid" {
  type    = string
  default = null
}

variable "oci_user_ocid" {
  type    = string
  default = null
}

variable "oci_fingerprint" {
  type    = string
  default = null
}

variable "oci_private_key_path" {
  type    = string
  default = null
}

variable "oci_region" {
  type    = string
  default = "eu-frankfurt-1"
}

variable "oci_compartment_ocid" {
  description = "Compartment of the VCN and the VM (the tenancy OCID is the root compartment)."
  type        = string
  default     = null
}

variable "oci_image_ocid" {
  description = "An Ubuntu 24.04 aarch64 image of the region (OCI lists them per region)."
  type        = string
  default     = null
}

variable "oci_ocpus" {
  description = "Ampere A1 OCPUs; the Always Free allowance is 4 OCPUs and 24 GB in total."
  type        = number
  default     = 4
}

variable "oci_memory_gb" {
  type    = number
  default = 24
}

# --- Hetzner Cloud (cloud = "hetzner") --------------------------------------------

variable "hcloud_token" {
  type      = string
  default   = null
  sensitive = true
}

variable "hcloud_server_type" {
  description = "cax21 (4 ARM vCPU, 8 GB) fits web, the workers and the model."
  type        = string
  default     = "cax21"
}

variable "hcloud_location" {
  type    = string
  default = "fsn1"
}

# --- Kimberly on the cluster ------------------------------------------------------

variable "deploy_kimberly" {
  description = "Apply the production overlay once the host is up (needs kubectl and ssh where terraform runs)."
  type        = bool
  default     = true
}

variable "overlay" {
  description = "deploy/k8s overlay to apply."
  type        = string
  default     = "production"
}

variable "image" {
  description = "The image to run, pinned: ghcr.io/OWNER/kimberly@sha256:... (or :tag)."
  type        = string
}

variable "kimberly_secrets" {
  description = "Keys of the kimberly-secrets Secret: SECRET_KEY, DATABASE_URL, REDIS_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (deploy/k8s/overlays/production/secret.template.yaml)."
  type        = map(string)
  sensitive   = true

  validation {
    condition     = alltrue([for k in ["SECRET_KEY", "DATABASE_URL", "REDIS_URL"] : contains(keys(var.kimberly_secrets), k)])
    error_message = "kimberly_secrets needs at least SECRET_KEY, DATABASE_URL and REDIS_URL."
  }
}
