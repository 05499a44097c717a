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
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
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
{{- if .Values.tls.enabled -}}
{{- $tlsDir := include "codec-server.tlsDir" . -}}
{{- $_ := set $server "tls" (dict "cert_file" (printf "%s/tls.crt" $tlsDir) "key_file" (printf "%s/tls.key" $tlsDir) "reload_interval" .Values.tls.reloadInterval) -}}
{{- end -}}
{{- $_ := set $config "server" $server -}}
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
