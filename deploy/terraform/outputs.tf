output "public_ip" {
  description = "Address of the k3s host: point your DNS name (the overlay's Ingress host) at it."
  value       = local.host.public_ip
}

output "ssh" {
  description = "Log in to the host."
  value       = "ssh ${local.host.ssh_user}@${local.host.public_ip}"
}

output "kubectl_tunnel" {
  description = "Reach the cluster's API from here (the kubeconfig is /etc/rancher/k3s/k3s.yaml on the host, server https://127.0.0.1:16443 through this tunnel)."
  value       = "ssh -N -L 16443:127.0.0.1:6443 ${local.host.ssh_user}@${local.host.public_ip}"
}
