{{/*
The operator's permissions, in one place. Each rule says why it exists; nothing uses
wildcards. A feature that needs more access adds one rule to the right list:

- evergreen.rules.namespaced: objects in the namespaces the operator watches. Cluster-wide
  they go into the ClusterRole; with watchNamespaces, into a Role in each listed namespace.
- evergreen.rules.clusterScoped: what kopf reads cluster-wide in every mode.
- evergreen.rules.namespaceDiscovery: only with watchNamespaces (kopf then lists and watches
  namespaces to start and stop its per-namespace watches; cluster-wide it does not).
- evergreen.rules.leases: the replicas' Leases, in the release namespace only (a Role).
*/}}

{{- define "evergreen.rules.namespaced" -}}
# The ModelMonitors: list and watch them (the watch is the operator's cache), read one again
# after a conflicting write, and patch the give-back finalizer while Evergreen serves versions.
- apiGroups: ["evergreen.dev"]
  resources: ["modelmonitors"]
  verbs: ["get", "list", "watch", "patch"]
# Owner references with blockOwnerDeletion on what Evergreen creates (run workloads, version
# Deployments and Services): the API server requires update on the owner's finalizers for
# that (OwnerReferencesPermissionEnforcement admission, on by default in OpenShift).
- apiGroups: ["evergreen.dev"]
  resources: ["modelmonitors/finalizers"]
  verbs: ["update"]
# Their status: conditions, the last evaluation and the schedule (one guarded JSON patch).
- apiGroups: ["evergreen.dev"]
  resources: ["modelmonitors/status"]
  verbs: ["patch"]
# Events on a ModelMonitor (DriftDetected, KPIBreached, PrometheusUnavailable, ...).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Prometheus credentials and CA bundles a ModelMonitor names in its own namespace. Read by
# name only: without list or watch the operator cannot enumerate Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# CA bundles and reference (training) histograms a ModelMonitor names, by name only.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# The ServiceAccount a monitor names for its runs (spec.serviceAccountName), read by name
# before a run is created: a missing one is reported instead of a Job whose pods never start.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
# Retraining runs: create a run's Job (named after its run number, so a retry gets 409 and
# adopts it) and read it back by name (also to find a run whose claim was lost); Jobs are
# deleted through their owner, the ModelMonitor.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create"]
# A finished run's pods: the candidate's version and metrics are in a termination message.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# Progressive delivery: a Deployment and a Service per model version, cloned from the team's
# (read by name), scaled by the Replicas router; the team's Deployment is scaled to 0 once
# Evergreen serves its version, and scaled back when the ModelMonitor is deleted.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "create", "patch", "delete"]
{{- if .Values.rbac.gatewayAPI }}
# The GatewayAPI router's HTTPRoute: weights between versions, and header rules for holds.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "create", "patch", "delete"]
{{- end }}
{{- range .Values.rbac.workloads }}
# Retraining runs of a custom workload kind (values: rbac.workloads).
- apiGroups: [{{ .apiGroup | quote }}]
  resources: {{ toJson .resources }}
  verbs: ["get", "create"]
{{- end }}
{{- end }}

{{- define "evergreen.rules.clusterScoped" -}}
# kopf watches CustomResourceDefinitions to notice the ModelMonitor CRD being installed,
# upgraded or removed.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{- define "evergreen.rules.namespaceDiscovery" -}}
# kopf lists and watches namespaces (names and labels only) to follow the watched ones
# being created and deleted.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{- define "evergreen.rules.leases" -}}
# Replicas share the monitors through one Lease each (docs/scaling.md): list the group's,
# create and renew (update) its own, delete its own on a clean stop and those that expired.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["list", "create", "update", "delete"]
{{- end }}
