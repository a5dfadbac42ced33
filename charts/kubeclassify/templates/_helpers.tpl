{{/* Names ------------------------------------------------------------------------------------- */}}

{{- define "kubeclassify.name" -}}
{{- default "kubeclassify" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-kubeclassify, or the release name alone when it already says kubeclassify. */}}
{{- define "kubeclassify.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "kubeclassify.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "kubeclassify.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: <fullname>-<component>. Call with (list $ "gateway"). */}}
{{- define "kubeclassify.component" -}}
{{- printf "%s-%s" (include "kubeclassify.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* Labels -------------------------------------------------------------------------------------- */}}

{{- define "kubeclassify.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "kubeclassify.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every object's labels. Call with (list $ "component"). */}}
{{- define "kubeclassify.labels" -}}
{{- $ := index . 0 -}}
{{ include "kubeclassify.selectorLabels" . }}
app.kubernetes.io/part-of: kubeclassify
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version }}
{{- end -}}

{{/* Images: repository:tag, the tag defaulting to the chart's appVersion. Call with (list $ .Values.x.image). */}}
{{- define "kubeclassify.image" -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.repository (default (index . 0).Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/* Security: the `restricted` Pod Security profile ---------------------------------------------- */}}

{{- define "kubeclassify.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . | default 10001 }}
runAsGroup: {{ . | default 10001 }}
fsGroup: {{ . | default 10001 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubeclassify.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Scheduling and pull secrets for a pod spec. Call with (list $ .Values.component). */}}
{{- define "kubeclassify.scheduling" -}}
{{- $ := index . 0 -}}
{{- $c := index . 1 -}}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Secrets --------------------------------------------------------------------------------------- */}}

{{/*
A generated secret value (base64), kept across upgrades: the value already in the cluster when there
is one, a new random one at the first install. Call with (dict "ctx" $ "secret" NAME "key" KEY).
*/}}
{{- define "kubeclassify.generated" -}}
{{- $found := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $found (hasKey $found.data .key) -}}
{{- index $found.data .key -}}
{{- else -}}
{{- randAlphaNum 40 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the operator watches (never empty: the release namespace by default). */}}
{{- define "kubeclassify.watchedNamespaces" -}}
{{- $namespaces := .Values.operator.watch.namespaces | default (list .Release.Namespace) -}}
{{- toJson (uniq $namespaces) -}}
{{- end -}}

{{/* The redis URL's Secret and key, for the gateway's env. */}}
{{- define "kubeclassify.redisEnv" -}}
{{- if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | default (include "kubeclassify.component" (list . "redis")) }}
      key: password
- name: KUBECLASSIFY_GATEWAY__REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "kubeclassify.component" (list . "redis")) | quote }}
{{- else }}
- name: KUBECLASSIFY_GATEWAY__REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "redis.external.existingSecret is needed when redis.enabled is false" .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.key }}
{{- end }}
{{- end -}}
