"""Deploying xdsr on Kubernetes: the CRDs, the manifests, the values that shape them."""
