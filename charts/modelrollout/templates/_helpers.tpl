{{/* Chart name, overridable. */}}
{{- define "modelrollout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "modelrollout.fullname" -}}
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

{{- define "modelrollout.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelrollout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelrollout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelrollout.labels" -}}
helm.sh/chart: {{ include "modelrollout.chart" . }}
{{ include "modelrollout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelrollout
app.kubernetes.io/component: operator
{{- end }}

{{- define "modelrollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelrollout.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modelrollout.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Checks the values that cannot work together; every template includes it so that any render fails early.
*/}}
{{- define "modelrollout.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.ha.enabled) }}
{{- fail "replicaCount > 1 requires ha.enabled=true: without leader election every replica would act on the same rollouts" }}
{{- end }}
{{- if .Values.ha.enabled }}
{{- if not (and (lt (float64 .Values.ha.retryPeriod) (float64 .Values.ha.renewDeadline)) (lt (float64 .Values.ha.renewDeadline) (float64 .Values.ha.leaseDuration)) (gt (float64 .Values.ha.retryPeriod) 0.0)) }}
{{- fail "ha needs 0 < retryPeriod < renewDeadline < leaseDuration: a leader must stop writing before a standby may take over" }}
{{- end }}
{{- end }}
{{- if and (not .Values.watch.clusterWide) (empty .Values.watch.namespaces) }}
{{- fail "watch.namespaces must list at least one namespace when watch.clusterWide is false" }}
{{- end }}
{{- if and .Values.watch.clusterWide (not (empty .Values.watch.namespaces)) }}
{{- fail "watch.namespaces is only used when watch.clusterWide is false; set one or the other" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (eq (int .Values.metrics.port) 0) }}
{{- fail "serviceMonitor.enabled needs the metrics endpoint: metrics.port must not be 0" }}
{{- end }}
{{- $interval := toString .Values.prometheus.scrapeInterval }}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" $interval) }}
{{- fail (printf "prometheus.scrapeInterval must be a duration such as 30s or 1m, not %q" $interval) }}
{{- end }}
{{- if regexMatch "^(0+(\\.0+)?(ms|s|m|h))+$" $interval }}
{{- fail "prometheus.scrapeInterval must be above zero" }}
{{- end }}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" (toString .Values.statusHeartbeat)) }}
{{- fail (printf "statusHeartbeat must be a duration such as 60s or 5m (0s writes every check), not %q" (toString .Values.statusHeartbeat)) }}
{{- end }}
{{- if lt (int .Values.kubeWorkers) 1 }}
{{- fail "kubeWorkers must be at least 1" }}
{{- end }}
{{- if not (kindIs "slice" .Values.prometheus.allowedUrls) }}
{{- fail "prometheus.allowedUrls must be a list of URLs" }}
{{- end }}
{{- range .Values.prometheus.allowedUrls }}
{{- if not (regexMatch "^https?://[^/\\s]+" (toString .)) }}
{{- fail (printf "prometheus.allowedUrls: %q is not an http:// or https:// URL" (toString .)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The rules for one namespace's ModelRollouts and Seldon deployments: exactly the calls the operator makes.
Shared by the ClusterRole (cluster-wide) and the per-namespace Roles (namespace-scoped).
*/}}
{{- define "modelrollout.namespacedRules" -}}
# Kopf lists and watches rollouts; handlers read them (get), clear a handled action annotation (patch), and
# add and remove the operator's finalizer on them (patch or update of the main resource).
- apiGroups: [modelrollout.dev]
  resources: [modelrollouts]
  verbs: [get, list, watch, patch, update]
# Rollout state is written to the status subresource with a merge patch.
- apiGroups: [modelrollout.dev]
  resources: [modelrollouts/status]
  verbs: [patch]
# The finalizers subresource: clusters running the OwnerReferencesPermissionEnforcement admission plugin ask
# for it before finalizers or blocking owner references involving a rollout may be set.
- apiGroups: [modelrollout.dev]
  resources: [modelrollouts/finalizers]
  verbs: [patch, update]
# Metrics may reference a shared AnalysisTemplate: the watch keeps a copy; one it has not delivered yet is
# read by name when a check runs.
- apiGroups: [modelrollout.dev]
  resources: [analysistemplates]
  verbs: [get, list, watch]
# The traffic backend reads the target and replaces it, guarded by its resourceVersion; the watch keeps a
# copy for observations and wakes the rollouts acting on a deployment that changed.
- apiGroups: [machinelearning.seldon.io]
  resources: [seldondeployments]
  verbs: [get, list, watch, update]
# Events about rollouts (kubectl describe), from the operator and from Kopf. A repeat of a recent Event is
# merged into it by patching its count, as client-go's event correlator does.
- apiGroups: [""]
  resources: [events]
  verbs: [create, get, patch]
{{- end }}
