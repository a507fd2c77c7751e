"""Talking to the Kubernetes API: one narrow async facade over the official client."""

from evergreen.kube.client import KubeApi, ObjectRef, load_configuration

__all__ = ["KubeApi", "ObjectRef", "load_configuration"]
