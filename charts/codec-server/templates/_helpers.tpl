{{/*
Names, labels and the pieces several templates share.
*/}}

{{- define "codec-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "codec-server.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "codec-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "codec-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The `helm test` pod: same release, but never matched by the server's selector. */}}
{{- define "codec-server.testLabels" -}}
app.kubernetes.io/name: {{ include "codec-server.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end -}}

{{- define "codec-server.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "codec-server.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "codec-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "codec-server.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "codec-server.image" -}}
{{- $image := .Values.image -}}
{{- /* An empty repository is refused by codec-server.validate, which names the settings to fix in order. */ -}}
{{- $repository := $image.repository -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The `helm test` image: tests.image when its repository is set, else the server's image. */}}
{{- define "codec-server.testImage" -}}
{{- $t := .Values.tests.image -}}
{{- if not $t.repository -}}
{{- include "codec-server.image" . -}}
{{- else if $t.digest -}}
{{- printf "%s@%s" $t.repository $t.digest -}}
{{- else -}}
{{- printf "%s:%s" $t.repository (default .Chart.AppVersion $t.tag) -}}
{{- end -}}
{{- end -}}

{{/* Scheduling and pull settings every pod of the chart shares (server, migration Job, helm test). */}}
{{- define "codec-server.podPlacement" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The restricted security context of every container of the chart. */}}
{{- define "codec-server.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Whole seconds of a humantime duration ("30s", "1m 30s", "500ms", "2h"); fractions round up. Fails on a
unit it does not know, so a typo cannot silently shorten a derived deadline.
*/}}
{{- define "codec-server.seconds" -}}
{{- $ms := 0 -}}
{{- range $part := regexFindAll "[0-9]+\\s*[a-zA-Zµ]+" (toString .) -1 -}}
{{- $n := regexFind "^[0-9]+" $part | int -}}
{{- $unit := regexReplaceAll "^[0-9]+\\s*" $part "" -}}
{{- if has $unit (list "ms" "msec" "msecs" "millis") -}}{{- $ms = add $ms $n -}}
{{- else if has $unit (list "s" "sec" "secs" "second" "seconds") -}}{{- $ms = add $ms (mul $n 1000) -}}
{{- else if has $unit (list "m" "min" "mins" "minute" "minutes") -}}{{- $ms = add $ms (mul $n 60000) -}}
{{- else if has $unit (list "h" "hr" "hrs" "hour" "hours") -}}{{- $ms = add $ms (mul $n 3600000) -}}
{{- else -}}{{- fail (printf "cannot read the duration %q: use ms, s, m or h" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}

{{/* config.server.shutdown_timeout in whole seconds (the server's default is 30s). */}}
{{- define "codec-server.shutdownSeconds" -}}
{{- $server := .Values.config.server | default dict -}}
{{- include "codec-server.seconds" ($server.shutdown_timeout | default "30s") -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: set, or preStop + shutdown_timeout + 10 s for the audit flush. */}}
{{- define "codec-server.gracePeriod" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (int .Values.preStopSleepSeconds) (include "codec-server.shutdownSeconds" . | int) 10 -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* The derived memory limit in MiB (memorySizing). */}}
{{- define "codec-server.memoryLimitMiB" -}}
{{- $server := .Values.config.server | default dict -}}
{{- $body := $server.max_body_bytes | default 16777216 | int64 -}}
{{- $decompressed := $server.max_decompressed_bytes | default 67108864 | int64 -}}
{{- $perRequest := add (mul 3 $body) $decompressed -}}
{{- $bytes := mul (int .Values.memorySizing.concurrentLargeRequests) $perRequest -}}
{{- add (int .Values.memorySizing.baselineMiB) (div (add $bytes 1048575) 1048576) -}}
{{- end -}}

{{/* resources with the derived memory limit and, on an emptyDir data directory, an ephemeral-storage request. */}}
{{- define "codec-server.resources" -}}
{{- $r := deepCopy (.Values.resources | default dict) -}}
{{- $requests := $r.requests | default dict -}}
{{- $limits := $r.limits | default dict -}}
{{- if not (hasKey $limits "memory") -}}
{{- $_ := set $limits "memory" (printf "%dMi" (include "codec-server.memoryLimitMiB" . | int)) -}}
{{- end -}}
{{- if and (not .Values.persistence.enabled) (not (hasKey $requests "ephemeral-storage")) -}}
{{- $_ := set $requests "ephemeral-storage" .Values.dataDir.sizeLimit -}}
{{- end -}}
{{- $_ := set $r "requests" $requests -}}
{{- $_ := set $r "limits" $limits -}}
{{- toYaml $r -}}
{{- end -}}

{{/* Whether the PodDisruptionBudget is rendered: as set, or (null) whenever more than one replica runs. */}}
{{- define "codec-server.pdbEnabled" -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if kindIs "invalid" $pdb.enabled -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- else if $pdb.enabled -}}true{{- end -}}
{{- end -}}

{{/* Whether the migration Job runs (and the server does not migrate at start). */}}
{{- define "codec-server.migrationJob" -}}
{{- $audit := .Values.config.audit | default dict -}}
{{- if and .Values.migrations.job.enabled (ne (toString $audit.enabled) "false") -}}true{{- end -}}
{{- end -}}

{{/* "https" when the pod serves TLS, else "http": the port name and the probes' scheme. */}}
{{- define "codec-server.portName" -}}
{{- ternary "https" "http" .Values.tls.enabled -}}
{{- end -}}

{{/* Where things are mounted in the pod; the config file names these paths. */}}
{{- define "codec-server.configDir" -}}/etc/codec-server{{- end -}}
{{- define "codec-server.dataDir" -}}/var/lib/codec-server{{- end -}}
{{- define "codec-server.secretsDir" -}}/run/secrets/codec-server{{- end -}}
{{- define "codec-server.tlsDir" -}}/run/secrets/codec-server-tls{{- end -}}
{{- define "codec-server.localKeysDir" -}}/run/secrets/codec-server-keys{{- end -}}
{{- define "codec-server.dbCaDir" -}}/run/secrets/codec-server-db-ca{{- end -}}

{{/* The name of the Secret mounted at secretsDir (chart-made or existing). */}}
{{- define "codec-server.secretName" -}}
{{- default (include "codec-server.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Whether the chart makes its own Secret: some secret value is set and no existingSecret. */}}
{{- define "codec-server.createSecret" -}}
{{- $s := .Values.secrets -}}
{{- if and (not $s.existingSecret) (or $s.auditDatabaseUrl $s.vaultToken $s.vaultSecretId $s.files) -}}true{{- end -}}
{{- end -}}

{{/* Whether the pod mounts the secrets volume. */}}
{{- define "codec-server.mountSecrets" -}}
{{- if or .Values.secrets.existingSecret (include "codec-server.createSecret" .) -}}true{{- end -}}
{{- end -}}

{{/* The Vault login method, or "" without [kms.vault]. */}}
{{- define "codec-server.vaultAuthMethod" -}}
{{- $vault := (.Values.config.kms | default dict).vault -}}
{{- if and $vault $vault.auth -}}{{ $vault.auth.method }}{{- end -}}
{{- end -}}

{{/*
Secrets as `CODEC_*_FILE` environment variables: the server reads each value from the mounted file.
Keys of the Secret → config keys:
  audit-database-url → audit.database_url
  vault-token        → kms.vault.auth.token
  vault-secret-id    → kms.vault.auth.secret_id
*/}}
{{- define "codec-server.secretFileEnv" -}}
{{- $dir := include "codec-server.secretsDir" . -}}
{{- $audit := .Values.config.audit | default dict -}}
{{- if and (ne (toString $audit.enabled) "false") (eq .Values.auditDatabase "postgres") }}
- name: CODEC_AUDIT__DATABASE_URL_FILE
  value: {{ printf "%s/audit-database-url" $dir | quote }}
{{- end }}
{{- $method := include "codec-server.vaultAuthMethod" . -}}
{{- if eq $method "token" }}
- name: CODEC_KMS__VAULT__AUTH__TOKEN_FILE
  value: {{ printf "%s/vault-token" $dir | quote }}
{{- else if eq $method "approle" }}
- name: CODEC_KMS__VAULT__AUTH__SECRET_ID_FILE
  value: {{ printf "%s/vault-secret-id" $dir | quote }}
{{- end }}
{{- end -}}

{{/* Every KEK URI named by a keyring, as a list. */}}
{{- define "codec-server.kekUris" -}}
{{- $uris := list -}}
{{- range $name, $ring := (.Values.config.keyrings | default dict) -}}
{{- $uris = concat $uris ($ring.primary | default list) ($ring.decrypt_only | default list) -}}
{{- end -}}
{{- toJson $uris -}}
{{- end -}}

{{/*
The config file: `.Values.config` plus what the chart owns (listen address, data directory, TLS files,
local key directory). Secrets never appear here: they come from files (see secretFileEnv).
*/}}
{{- define "codec-server.configToml" -}}
{{- $config := deepCopy .Values.config -}}
{{- $_ := set $config "data_dir" (include "codec-server.dataDir" .) -}}
{{- $server := $config.server | default dict -}}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.containerPort)) -}}
{{- $_ := set $server "admin_listen" (printf "0.0.0.0:%d" (int .Values.adminPort)) -}}
{{- if .Values.tls.enabled -}}
{{- $tlsDir := include "codec-server.tlsDir" . -}}
{{- $_ := set $server "tls" (dict "cert_file" (printf "%s/tls.crt" $tlsDir) "key_file" (printf "%s/tls.key" $tlsDir) "reload_interval" .Values.tls.reloadInterval) -}}
{{- end -}}
{{- $_ := set $config "server" $server -}}
{{- $audit := $config.audit | default dict -}}
{{- if .Values.auditDatabaseCa.existingSecret -}}
{{- $_ := set $audit "database_ca_file" (printf "%s/%s" (include "codec-server.dbCaDir" .) .Values.auditDatabaseCa.key) -}}
{{- end -}}
{{- if include "codec-server.migrationJob" . -}}
{{- $_ := set $audit "migrate_on_start" false -}}
{{- end -}}
{{- $_ := set $config "audit" $audit -}}
{{- if .Values.localKeys.existingSecret -}}
{{- $kms := $config.kms | default dict -}}
{{- $_ := set $kms "local" (dict "key_dir" (include "codec-server.localKeysDir" .)) -}}
{{- $_ := set $config "kms" $kms -}}
{{- end -}}
# Rendered by the codec-server Helm chart ({{ .Chart.Name }}-{{ .Chart.Version }}) from the release's values.
# Secrets are not in this file: the server reads them from the files named by the CODEC_*_FILE variables.
{{- include "codec-server.tomlTable" (dict "path" "" "table" $config) }}
{{ end -}}

{{/*
A TOML emitter for one table: {"path": "a.b", "table": dict}. Scalars and arrays of scalars first (toJson
writes strings, numbers, booleans and arrays that TOML reads identically, and integers without a decimal
point even though YAML values are float64), then sub-tables, then arrays of tables. null values and
empty tables are left out, so the server's defaults apply.
*/}}
{{- define "codec-server.tomlTable" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- range $key, $value := $table -}}
{{- $isTables := and (kindIs "slice" $value) (gt (len $value) 0) (kindIs "map" (first $value)) -}}
{{- if not (or (kindIs "invalid" $value) (kindIs "map" $value) $isTables) }}
{{ include "codec-server.tomlKey" $key }} = {{ toJson $value }}
{{- end -}}
{{- end -}}
{{- range $key, $value := $table -}}
{{- if and (kindIs "map" $value) (gt (len $value) 0) -}}
{{- $sub := include "codec-server.tomlKey" $key -}}
{{- if $path }}{{ $sub = printf "%s.%s" $path $sub }}{{ end }}
{{- /* A table holding only sub-tables needs no header of its own. */ -}}
{{- $scalars := false -}}
{{- range $v := $value -}}
{{- $isTables := and (kindIs "slice" $v) (gt (len $v) 0) (kindIs "map" (first $v)) -}}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) $isTables) }}{{ $scalars = true }}{{ end -}}
{{- end -}}
{{- if $scalars }}

[{{ $sub }}]
{{- end -}}
{{- include "codec-server.tomlTable" (dict "path" $sub "table" $value) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := $table -}}
{{- if and (kindIs "slice" $value) (gt (len $value) 0) (kindIs "map" (first $value)) -}}
{{- $sub := include "codec-server.tomlKey" $key -}}
{{- if $path }}{{ $sub = printf "%s.%s" $path $sub }}{{ end }}
{{- range $item := $value }}

[[{{ $sub }}]]
{{- include "codec-server.tomlTable" (dict "path" $sub "table" $item) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A TOML key: bare when it can be, else quoted. */}}
{{- define "codec-server.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/* The server container's environment (server pod and migration Job). */}}
{{- define "codec-server.serverEnv" -}}
- name: CODEC_CONFIG
  value: {{ printf "%s/config.toml" (include "codec-server.configDir" .) | quote }}
{{- with include "codec-server.secretFileEnv" . | trim }}
{{ . }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Mounts the server pod and the migration Job share: config, secrets, the database CA, extras. */}}
{{- define "codec-server.volumeMounts" -}}
- name: config
  mountPath: {{ include "codec-server.configDir" . }}
  readOnly: true
{{- if include "codec-server.mountSecrets" . }}
- name: secrets
  mountPath: {{ include "codec-server.secretsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.auditDatabaseCa.existingSecret }}
- name: db-ca
  mountPath: {{ include "codec-server.dbCaDir" . }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The volumes behind codec-server.volumeMounts: {"root": ., "configMap": name, "secret": name}. */}}
{{- define "codec-server.volumes" -}}
{{- $root := .root -}}
- name: config
  configMap:
    name: {{ .configMap }}
{{- if include "codec-server.mountSecrets" $root }}
- name: secrets
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
{{- end }}
{{- if $root.Values.auditDatabaseCa.existingSecret }}
- name: db-ca
  secret:
    secretName: {{ $root.Values.auditDatabaseCa.existingSecret }}
    defaultMode: 0444
    items:
      - key: {{ $root.Values.auditDatabaseCa.key }}
        path: {{ $root.Values.auditDatabaseCa.key }}
{{- end }}
{{- with $root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The TCP port of an http(s) URL: the one it names, else the scheme's (443 for https, 80 for http). */}}
{{- define "codec-server.urlPort" -}}
{{- $hostPort := regexReplaceAll "^[a-z]+://([^/]+).*$" . "${1}" -}}
{{- $port := regexFind ":[0-9]+$" $hostPort | trimPrefix ":" -}}
{{- if $port -}}{{ $port }}{{- else if hasPrefix "https://" . -}}443{{- else -}}80{{- end -}}
{{- end -}}
