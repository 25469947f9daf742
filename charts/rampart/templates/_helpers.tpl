{{- define "rampart.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rampart.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rampart.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "rampart.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rampart.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rampart.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "rampart.webhookService" -}}
{{- printf "%s-webhook" (include "rampart.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rampart.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "rampart.fullname" .) -}}
{{- end -}}

{{- define "rampart.alertSecret" -}}
{{- default (printf "%s-alert-token" (include "rampart.fullname" .)) .Values.alerts.existingSecret -}}
{{- end -}}

{{/* Namespaces never injected or validated: the control plane's and this release's. */}}
{{- define "rampart.excludedNamespaces" -}}
{{- $excluded := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- concat $excluded .Values.webhooks.excludeNamespaces | uniq | toJson -}}
{{- end -}}
