# One Hetzner Cloud VM (not free, a few euros a month) behind a firewall: SSH
# from the admin addresses, HTTP and HTTPS from anywhere (Traefik).

variable "name" { type = string }
variable "server_type" { type = string }
variable "location" { type = string }
variable "ssh_public_key" { type = string }
variable "admin_cidrs" { type = list(string) }
variable "user_data" { type = string }

terraform {
  required_providers {
    hcloud = {
      source = "hetznercloud/hcloud"
    }
  }
}

resource "hcloud_ssh_key" "this" {
  name       = var.name
  public_key = var.ssh_public_key
}

resource "hcloud_firewall" "this" {
  name = var.name

  rule {
    direction  = "in"
    protocol   = "tcp"
    port       = "22"
    source_ips = var.admin_cidrs
  }

  rule {
    direction  = "in"
    protocol   = "tcp"
    port       = "80"
    source_ips = ["0.0.0.0/0", "::/0"]
  }

  rule {
    direction  = "in"
    protocol   = "tcp"
    port       = "443"
    source_ips = ["0.0.0.0/0", "::/0"]
  }
}

resource "hcloud_server" "this" {
  name         = var.name
  server_type  = var.server_type
  location     = var.location
  image        = "ubuntu-24.04"
  ssh_keys     = [hcloud_ssh_key.this.id]
  firewall_ids = [hcloud_firewall.this.id]
  user_data    = var.user_data
}

output "public_ip" {
  value = hcloud_server.this.ipv4_address
}

output "ssh_user" {
  value = "root"
}
