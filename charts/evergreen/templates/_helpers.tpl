{{/*
Names, labels and small derived values shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "evergreen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else <release>-<name>, else the
release name alone when it already contains the chart name. Truncated to 63 characters
(DNS label) because some objects' names become label values.
*/}}
{{- define "evergreen.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* name-version, for the helm.sh/chart label. */}}
{{- define "evergreen.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods; never change them (Deployment selectors are immutable). */}}
{{- define "evergreen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "evergreen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "evergreen.labels" -}}
helm.sh/chart: {{ include "evergreen.chart" . }}
{{ include "evergreen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: evergreen
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "evergreen.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "evergreen.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The metrics Service's name; a ServiceMonitor makes it the `job` label of the target. */}}
{{- define "evergreen.metricsServiceName" -}}
{{- printf "%s-metrics" (include "evergreen.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The `job` label the alert rules select the operator's series by. */}}
{{- define "evergreen.job" -}}
{{- default (include "evergreen.metricsServiceName" .) .Values.prometheusRule.job }}
{{- end }}

{{/* repository:tag or repository@digest. */}}
{{- define "evergreen.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the operator watches only the namespaces listed in watchNamespaces. */}}
{{- define "evergreen.namespaced" -}}
{{- if .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/* Where the bearer token and the CA bundle of the default Prometheus are mounted. */}}
{{- define "evergreen.tokenDir" -}}/var/run/secrets/evergreen/prometheus{{- end }}
{{- define "evergreen.caDir" -}}/etc/evergreen/prometheus-ca{{- end }}

{{/* Headers as the operator reads them: NAME=VALUE,NAME=VALUE (sorted, so renders are stable). */}}
{{- define "evergreen.headerList" -}}
{{- $pairs := list }}
{{- range $name := keys . | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $name (get $ $name)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* Values that cannot be expressed in the schema alone. */}}
{{- define "evergreen.validate" -}}
{{- if and (not .Values.prometheus.url) (or .Values.prometheus.bearerTokenSecret.name .Values.prometheus.caConfigMap.name .Values.prometheus.headers) }}
{{- fail "prometheus.bearerTokenSecret, prometheus.caConfigMap and prometheus.headers apply to the default Prometheus: set prometheus.url too" }}
{{- end }}
{{- if and .Values.prometheus.caConfigMap.name (hasPrefix "http://" .Values.prometheus.url) }}
{{- fail "prometheus.caConfigMap is set but prometheus.url is plain http://: use https://" }}
{{- end }}
{{- if gt (mulf 2 .Values.sharding.renewSeconds) (float64 .Values.sharding.leaseSeconds) }}
{{- fail "sharding.renewSeconds must be at most half of sharding.leaseSeconds: a replica must survive one failed renewal" }}
{{- end }}
{{- end }}

{{/*
One alerting rule. Takes a dict: root (the top context), alert (its values: for, severity),
name, expr, summary, description, and optionally labels (fixed labels of this alert). Prometheus templates in summary/description ({{ $labels.x }})
are passed through untouched.
*/}}
{{- define "evergreen.alertRule" -}}
- alert: {{ .name }}
  expr: |-
    {{- .expr | trim | nindent 4 }}
  for: {{ .alert.for }}
  labels:
    severity: {{ .alert.severity | quote }}
    {{- range $key, $value := .labels }}
    {{ $key }}: {{ $value | quote }}
    {{- end }}
    {{- range $key, $value := .root.Values.prometheusRule.alertLabels }}
    {{ $key }}: {{ $value | quote }}
    {{- end }}
  annotations:
    summary: {{ .summary | quote }}
    description: {{ .description | quote }}
    {{- with .root.Values.prometheusRule.runbookBaseUrl }}
    runbook_url: {{ printf "%s/%s" (trimSuffix "/" .) $.name | quote }}
    {{- end }}
{{- end }}
