{{/* The release's resource name, at most 63 characters. */}}
{{- define "klaxon.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "klaxon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "klaxon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels that select the pod. */}}
{{- define "klaxon.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The ConfigMap holding rota.yaml. */}}
{{- define "klaxon.rotaConfigMap" -}}
{{- if .Values.rota.existingConfigMap -}}
{{- .Values.rota.existingConfigMap -}}
{{- else -}}
{{- printf "%s-rota" (include "klaxon.fullname" .) -}}
{{- end -}}
{{- end -}}
