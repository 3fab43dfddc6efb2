{{/*
The chart's name.
*/}}
{{- define "nantian.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the controller's objects: its Deployment, Service, ServiceAccount and RBAC.
Fixed, because hosts find the controller at nantian-controller.<namespace>.svc and the
generated ClusterRole and Role are named so.
*/}}
{{- define "nantian.controllerName" -}}
nantian-controller
{{- end }}

{{/*
chart label: name-version.
*/}}
{{- define "nantian.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels.
*/}}
{{- define "nantian.labels" -}}
helm.sh/chart: {{ include "nantian.chart" . }}
{{ include "nantian.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nantian
{{- end }}

{{/*
Selector labels of the controller's Pods.
*/}}
{{- define "nantian.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nantian.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/*
The controller's ServiceAccount.
*/}}
{{- define "nantian.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nantian.controllerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Images: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "nantian.controllerImage" -}}
{{- printf "%s:%s" .Values.controller.image.repository (default .Chart.AppVersion .Values.controller.image.tag) }}
{{- end }}

{{- define "nantian.hostImage" -}}
{{- printf "%s:%s" .Values.host.image.repository (default .Chart.AppVersion .Values.host.image.tag) }}
{{- end }}
