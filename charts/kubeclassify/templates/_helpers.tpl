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

{{/* Images: repository@digest when a digest is given, else repository:tag, the tag defaulting to the
chart's appVersion. Call with (list $ .Values.x.image). */}}
{{- define "kubeclassify.image" -}}
{{- $image := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default (index . 0).Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A Kubernetes memory quantity (512Mi, 1Gi, 500M, 1073741824) in bytes. */}}
{{- define "kubeclassify.bytes" -}}
{{- $q := toString . -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $unit := regexFind "[A-Za-z]+$" $q -}}
{{- $number := trimSuffix $unit $q | float64 -}}
{{- if and $unit (not (hasKey $units $unit)) }}{{ fail (printf "cannot read the memory quantity %q" $q) }}{{ end -}}
{{- mulf $number (ternary (index $units $unit) 1 (ne $unit "")) | int64 -}}
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

{{/*
Egress to a service named by a URL (http://minio.storage.svc:9000) or a host:port, as a list of zero
or one NetworkPolicy egress rules (JSON). Call with (list $ ADDRESS DEFAULT_PORT). An in-cluster name
(<service>, <service>.<namespace>.svc[.cluster.local]) opens that port to its namespace; an IP address
opens that port to it alone; any other host opens that port to public addresses only. Empty: none.
*/}}
{{- define "kubeclassify.egressTo" -}}
{{- $root := index . 0 -}}
{{- $address := index . 1 | default "" -}}
{{- $rules := list -}}
{{- if $address -}}
{{- $url := urlParse (ternary $address (printf "tcp://%s" $address) (contains "://" $address)) -}}
{{- $host := $url.hostname -}}
{{- $port := index . 2 -}}
{{- if eq $url.scheme "https" }}{{ $port = 443 }}{{ else if eq $url.scheme "http" }}{{ $port = 80 }}{{ end -}}
{{- with regexFind ":[0-9]+$" $url.host }}{{ $port = trimPrefix ":" . | atoi }}{{ end -}}
{{- $ports := list (dict "protocol" "TCP" "port" $port) -}}
{{- $labels := splitList "." $host -}}
{{- if regexMatch "^[0-9.]+$" $host -}}
{{- $rules = list (dict "to" (list (dict "ipBlock" (dict "cidr" (printf "%s/32" $host)))) "ports" $ports) -}}
{{- else if contains ":" $host -}}
{{- $rules = list (dict "to" (list (dict "ipBlock" (dict "cidr" (printf "%s/128" $host)))) "ports" $ports) -}}
{{- else if or (eq (len $labels) 1) (and (ge (len $labels) 3) (eq (index $labels 2) "svc")) -}}
{{- $namespace := $root.Release.Namespace -}}
{{- if gt (len $labels) 1 }}{{ $namespace = index $labels 1 }}{{ end -}}
{{- $peer := dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" $namespace)) -}}
{{- $rules = list (dict "to" (list $peer) "ports" $ports) -}}
{{- else -}}
{{- $publicPorts := list -}}
{{- range $root.Values.networkPolicy.publicPorts }}{{ $publicPorts = append $publicPorts (int .) }}{{ end -}}
{{- if not (has $port $publicPorts) -}}
{{- $rules = list (dict "to" (fromJsonArray (include "kubeclassify.publicPeers" $root)) "ports" $ports) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $rules -}}
{{- end -}}

{{/* Public addresses only (JSON peers): image URLs and webhooks must never reach the cluster's own network. */}}
{{- define "kubeclassify.publicPeers" -}}
{{- toJson (list
      (dict "ipBlock" (dict "cidr" "0.0.0.0/0" "except" (list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" "100.64.0.0/10" "169.254.0.0/16" "127.0.0.0/8")))
      (dict "ipBlock" (dict "cidr" "::/0" "except" (list "fc00::/7" "fe80::/10" "::1/128")))) -}}
{{- end -}}

{{/*
The operator's policy (JSON): policy.namespaces and policy.default as given, the release namespace's
entry extended with what the gateway there needs, and the gateway's prefixes reserved to its users.
*/}}
{{- define "kubeclassify.policy" -}}
{{- $namespaces := deepCopy (.Values.policy.namespaces | default dict) -}}
{{- $own := deepCopy (get $namespaces .Release.Namespace | default dict) -}}
{{- $read := $own.read | default list -}}
{{- $write := $own.write | default list -}}
{{- $secrets := $own.secrets | default list -}}
{{- $reserved := list -}}
{{- $shared := list -}}
{{- if .Values.gateway.enabled -}}
{{- $s := .Values.gateway.settings -}}
{{- $reserved = list $s.imagesUri $s.batchesUri -}}
{{- $read = concat $read (list $s.imagesUri $s.batchesUri) -}}
{{- $write = append $write $s.batchesUri -}}
{{- with $s.manifest -}}
{{- range $key := list "uri" "root" -}}
{{- with get $.Values.gateway.settings.manifest $key -}}
{{- $read = append $read . -}}
{{- $shared = append $shared . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with .Values.s3.existingSecret -}}
{{- $secrets = append $secrets . -}}
{{- end -}}
{{- $_ := set $own "read" (uniq $read) -}}
{{- $_ := set $own "write" (uniq $write) -}}
{{- $_ := set $own "secrets" (uniq $secrets) -}}
{{- $_ := set $own "serviceAccounts" ($own.serviceAccounts | default list) -}}
{{- $_ := set $namespaces .Release.Namespace $own -}}
{{- toJson (dict "namespaces" $namespaces "default" .Values.policy.default "reserved" $reserved "shared" $shared "allowFile" false) -}}
{{- end -}}
