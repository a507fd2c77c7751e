"""Test support: a real Kubernetes control plane, the node stand-in, the chart installed, binaries."""
