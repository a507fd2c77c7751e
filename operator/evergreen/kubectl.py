"""kubectl's conventions: ``kubectl evergreen ...`` and the namespace a bare command means.

kubectl runs any executable named ``kubectl-evergreen`` on the PATH for ``kubectl evergreen``,
passing the words after the plugin name; the package installs one (a console script), so
``kubectl evergreen explain NAME -n ml --context prod`` is ``evergreen explain NAME ...``.
kubectl does not pass its own flags to plugins: they go after the plugin name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from kubernetes import config as k8s_config

#: The namespace a pod runs in, when the command runs in a cluster without a kubeconfig.
_POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def context_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace a command without ``-n`` acts in, as kubectl decides it.

    The selected context's namespace (``--context``, else the current context) from
    ``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``; in a pod without a
    kubeconfig, the pod's namespace; otherwise ``default``.
    """
    default_file = Path(os.path.expanduser("~/.kube/config"))
    # Read $KUBECONFIG now: the client library reads it once, when first imported.
    files = (
        kubeconfig or os.environ.get("KUBECONFIG") or (str(default_file) if default_file.exists() else None)
    )
    if files:
        try:
            contexts, current = k8s_config.list_kube_config_contexts(config_file=files)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            contexts, current = [], None
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
        namespace = ((chosen or {}).get("context") or {}).get("namespace")
        if namespace:
            return str(namespace)
        if chosen is not None:
            return "default"
    if kubeconfig is None and _POD_NAMESPACE.exists():
        return _POD_NAMESPACE.read_text().strip() or "default"
    return "default"


def main(argv: Sequence[str] | None = None) -> int:
    """The ``kubectl-evergreen`` entry point: the evergreen command, introduced as kubectl's."""
    from evergreen.cli import main as evergreen_main

    return evergreen_main(argv, prog="kubectl evergreen")
