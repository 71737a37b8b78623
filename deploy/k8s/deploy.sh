#!/usr/bin/env bash
# Applies an overlay with a pinned image and waits until it serves:
#   deploy/k8s/deploy.sh staging ghcr.io/OWNER/kimberly@sha256:...
#   deploy/k8s/deploy.sh staging ghcr.io/OWNER/kimberly:1.2.0 --render   (print only)
# (the CD pipeline runs it; an operator can too, with kubectl pointed at the
# cluster). The overlay's namespace and its kimberly-secrets Secret must exist.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
overlay="${1:?usage: deploy.sh OVERLAY IMAGE}"
image="${2:?usage: deploy.sh OVERLAY IMAGE}"
[ -d "$here/overlays/$overlay" ] || { echo "no overlay $overlay" >&2; exit 2; }

# A kustomization of our own next to the overlays pins the image (kubectl has
# no `kustomize edit`); name@digest or name:tag. It must name the image as the
# overlay renders it (production renames it to its registry).
current="$(kubectl kustomize "$here/overlays/$overlay" | sed -nE 's/^ +image: ([^@]+\/)?(kimberly)([:@].*)?$/\1\2/p' | sort -u)"
[ "$(wc -l <<<"$current")" = 1 ] || { echo "not one Kimberly image: $current" >&2; exit 2; }
work="$here/overlays/.pinned-$overlay"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
if [[ "$image" == *@* ]]; then pin="    newName: ${image%@*}
    digest: ${image#*@}"; else pin="    newName: ${image%:*}
    newTag: \"${image##*:}\""; fi
cat >"$work/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../$overlay
images:
  - name: $current
$pin
YAML
rendered="$(kubectl kustomize "$work")"
namespace="$(awk '/^kind: Namespace$/{n=1} n && /^  name:/{print $2; exit}' <<<"$rendered")"
if [ "${3:-}" = "--render" ]; then
  echo "# namespace: $namespace"
  echo "$rendered"
  exit 0
fi
echo "deploying $overlay into namespace $namespace:"
grep -E '^ +image:' <<<"$rendered" | sort -u

# A Job's pod template cannot change: the old migration Job goes first.
kubectl -n "$namespace" delete job kimberly-migrate --ignore-not-found
kubectl apply -k "$work"
kubectl -n "$namespace" wait --for=condition=complete job/kimberly-migrate --timeout=15m
for deploy in kimberly-web kimberly-worker embedding-workers meditation-workers kimberly-agents kimberly-beat; do
  kubectl -n "$namespace" rollout status "deployment/$deploy" --timeout=15m
done
