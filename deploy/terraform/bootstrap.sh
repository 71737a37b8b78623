#!/usr/bin/env bash
# Called by main.tf (terraform_data.kimberly) with HOST, SSH_USER, SSH_KEY,
# OVERLAY, IMAGE and SECRETS_JSON in the environment. Untested here: terraform
# does not install on the development machine (README.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ssh_opts=(-i "$SSH_KEY" -o StrictHostKeyChecking=accept-new -o ConnectTimeout=10)
remote() { ssh "${ssh_opts[@]}" "$SSH_USER@$HOST" "$@"; }

echo "waiting for SSH and cloud-init on $HOST"
for _ in $(seq 60); do remote true 2>/dev/null && break; sleep 10; done
remote cloud-init status --wait >/dev/null
remote sudo k3s kubectl wait --for=condition=Ready node --all --timeout=5m

# The API through a tunnel (not opened in the firewall); 127.0.0.1 is in its
# certificate, so the kubeconfig only needs the tunnel's port.
work="$(mktemp -d)"
socket="$work/ssh.sock"
trap 'ssh -S "$socket" -O exit "$SSH_USER@$HOST" 2>/dev/null || true; rm -rf "$work"' EXIT
ssh "${ssh_opts[@]}" -f -N -M -S "$socket" -o ExitOnForwardFailure=yes \
  -L 16443:127.0.0.1:6443 "$SSH_USER@$HOST"
remote sudo cat /etc/rancher/k3s/k3s.yaml \
  | sed 's#https://127.0.0.1:6443#https://127.0.0.1:16443#' >"$work/kubeconfig"
export KUBECONFIG="$work/kubeconfig"

namespace="$("$repo/deploy/k8s/deploy.sh" "$OVERLAY" "$IMAGE" --render | head -1 | sed 's/^# namespace: //')"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
python3 -c 'import json, os; [print(f"{k}={v}") for k, v in json.loads(os.environ["SECRETS_JSON"]).items()]' \
  >"$work/secrets.env"
kubectl -n "$namespace" create secret generic kimberly-secrets \
  --from-env-file="$work/secrets.env" --dry-run=client -o yaml | kubectl apply -f -

"$repo/deploy/k8s/deploy.sh" "$OVERLAY" "$IMAGE"
