{{/*
Combinations of values that cannot work: `helm install`, `helm template` and `helm lint` fail with a
message saying how to fix them. values.schema.json checks types, names and enums; these checks span
several values. They mirror the server's own validation (src/config) where the pod's setting is fixed
by the chart (it always listens on 0.0.0.0).
*/}}
{{- define "codec-server.validate" -}}
{{- $v := .Values -}}
{{- $config := $v.config -}}
{{- $auth := $config.auth | default dict -}}
{{- $kms := $config.kms | default dict -}}
{{- $audit := $config.audit | default dict -}}
{{- $keyrings := $config.keyrings | default dict -}}
{{- $namespaces := $config.namespaces | default list -}}

{{- /* Authentication: the pod listens on 0.0.0.0, so the server demands jwt or an explicit opt-out. */ -}}
{{- if eq $auth.mode "disabled" -}}
{{- if not $auth.allow_unauthenticated_non_loopback -}}
{{- fail "config.auth.mode = \"disabled\": with auth disabled the server only listens on loopback, but in a pod it listens on 0.0.0.0 for the Service and the probes. Set config.auth.mode = \"jwt\" with config.auth.issuers and config.auth.policies, or set config.auth.allow_unauthenticated_non_loopback = true if something in front of the pod authenticates every request." -}}
{{- end -}}
{{- else -}}
{{- if not $auth.issuers -}}
{{- fail "config.auth.mode = \"jwt\" needs at least one trusted issuer in config.auth.issuers (issuer, audiences, jwks_url; or preset: temporal-cloud with issuer)." -}}
{{- end -}}
{{- if and (not $auth.policies) (not $auth.policy_file) -}}
{{- fail "config.auth.mode = \"jwt\" needs config.auth.policies (or config.auth.policy_file): without a policy nobody gets in." -}}
{{- end -}}
{{- end -}}

{{- /* Keys. */ -}}
{{- if not $keyrings -}}
{{- fail "config.keyrings is empty: define at least one keyring, e.g. config.keyrings.main.primary = [\"aws-kms://arn:aws:kms:<region>:<account>:key/<key-id>\"]." -}}
{{- end -}}
{{- if not $namespaces -}}
{{- fail "config.namespaces is empty: add at least one rule, e.g. {match: \"*\", keyring: main}; a namespace no rule covers is refused." -}}
{{- end -}}
{{- range $i, $rule := $namespaces -}}
{{- if not (hasKey $keyrings $rule.keyring) -}}
{{- fail (printf "config.namespaces[%d] (match %q) uses keyring %q, which config.keyrings does not define (defined: %s)." $i $rule.match $rule.keyring (keys $keyrings | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- $uris := include "codec-server.kekUris" . | fromJsonArray -}}
{{- range $uri := $uris -}}
{{- if and (hasPrefix "local://" $uri) (not $v.localKeys.existingSecret) -}}
{{- fail (printf "keyring KEK %s is a local key file: set localKeys.existingSecret to a Secret holding <name>.key files (codec-server keygen), or use a KMS." $uri) -}}
{{- end -}}
{{- if and (hasPrefix "vault-transit://" $uri) (not $kms.vault) -}}
{{- fail (printf "keyring KEK %s needs config.kms.vault (address and auth)." $uri) -}}
{{- end -}}
{{- end -}}

{{- /* Secrets that a setting reads from the Secret must have a source. */ -}}
{{- $secrets := $v.secrets -}}
{{- $auditOn := ne (toString $audit.enabled) "false" -}}
{{- if and $auditOn (eq $v.auditDatabase "postgres") (not $secrets.existingSecret) (not $secrets.auditDatabaseUrl) -}}
{{- fail "auditDatabase = postgres reads the URL from the Secret key audit-database-url: set secrets.existingSecret (a Secret with that key) or secrets.auditDatabaseUrl." -}}
{{- end -}}
{{- $method := include "codec-server.vaultAuthMethod" . -}}
{{- if and (eq $method "token") (not $secrets.existingSecret) (not $secrets.vaultToken) -}}
{{- fail "config.kms.vault.auth.method = \"token\" reads the token from the Secret key vault-token: set secrets.existingSecret (a Secret with that key) or secrets.vaultToken." -}}
{{- end -}}
{{- if and (eq $method "approle") (not $secrets.existingSecret) (not $secrets.vaultSecretId) -}}
{{- fail "config.kms.vault.auth.method = \"approle\" reads the secret id from the Secret key vault-secret-id: set secrets.existingSecret (a Secret with that key) or secrets.vaultSecretId." -}}
{{- end -}}

{{- /* Files the config names in the secrets mount must be there. */ -}}
{{- $secretsDir := include "codec-server.secretsDir" . -}}
{{- $paths := list -}}
{{- range $id, $key := (($config.legacy | default dict).keys | default dict) -}}
{{- $paths = append $paths (list (printf "config.legacy.keys.%s.key_file" $id) $key.key_file) -}}
{{- end -}}
{{- with $kms.vault -}}{{- with .ca_bundle -}}
{{- $paths = append $paths (list "config.kms.vault.ca_bundle" .) -}}
{{- end -}}{{- end -}}
{{- with $auth.policy_file -}}
{{- $paths = append $paths (list "config.auth.policy_file" .) -}}
{{- end -}}
{{- with $audit.database_ca_file -}}
{{- $paths = append $paths (list "config.audit.database_ca_file" .) -}}
{{- end -}}
{{- range $entry := $paths -}}
{{- $file := index $entry 1 | toString -}}
{{- if hasPrefix (printf "%s/" $secretsDir) $file -}}
{{- $key := trimPrefix (printf "%s/" $secretsDir) $file -}}
{{- if not (include "codec-server.mountSecrets" $) -}}
{{- fail (printf "%s is %s, but no Secret is mounted at %s: set secrets.files.%s, or secrets.existingSecret to a Secret with the key %s." (index $entry 0) $file $secretsDir $key $key) -}}
{{- end -}}
{{- if and (not $secrets.existingSecret) (not (hasKey ($secrets.files | default dict) $key)) -}}
{{- fail (printf "%s is %s, but the chart-made Secret has no key %s: add secrets.files.%s." (index $entry 0) $file $key $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Replicas and state. */ -}}
{{- $many := or $v.autoscaling.enabled (gt (int $v.replicaCount) 1) -}}
{{- if and $auditOn (eq $v.auditDatabase "sqlite") $many -}}
{{- fail "the SQLite audit database is a file in one pod: with replicaCount > 1 or autoscaling.enabled each replica would keep its own partial audit log. Use auditDatabase = postgres (shared by all replicas), or one replica." -}}
{{- end -}}
{{- if and $v.persistence.enabled $many -}}
{{- fail "persistence.enabled mounts one ReadWriteOnce volume: it needs replicaCount = 1 and autoscaling.enabled = false." -}}
{{- end -}}

{{- /* TLS and ingress. */ -}}
{{- if and $v.tls.enabled (not $v.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with tls.crt and tls.key (e.g. from cert-manager)." -}}
{{- end -}}
{{- $annotations := $v.ingress.annotations | default dict -}}
{{- $certByAnnotation := or (hasKey $annotations "alb.ingress.kubernetes.io/certificate-arn") (hasKey $annotations "networking.gke.io/managed-certificates") (hasKey $annotations "ingress.gcp.kubernetes.io/pre-shared-cert") -}}
{{- if and $v.ingress.enabled (not $v.ingress.tls) (not $v.ingress.externalTls) (not $certByAnnotation) -}}
{{- fail "ingress.enabled needs ingress.tls: the Temporal Web UI sends access tokens only to https:// codec endpoints, and tokens must not cross the network in clear text. If the load balancer terminates TLS with a certificate named in annotations (ACM: alb.ingress.kubernetes.io/certificate-arn; GKE: networking.gke.io/managed-certificates), set that annotation or ingress.externalTls = true." -}}
{{- end -}}
{{- if eq (int $v.adminPort) (int $v.containerPort) -}}
{{- fail "adminPort must differ from containerPort: the admin port serves /healthz, /readyz and /metrics apart from the API, e.g. 8082." -}}
{{- end -}}

{{- /* Shutdown: the kubelet must not kill the pod before the server's own deadline. */ -}}
{{- $shutdown := include "codec-server.shutdownSeconds" . | int -}}
{{- $needed := add (int $v.preStopSleepSeconds) $shutdown -}}
{{- if lt (include "codec-server.gracePeriod" . | int) $needed -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) is shorter than preStopSleepSeconds (%d) + config.server.shutdown_timeout (%ds): the kubelet would kill requests the server is still finishing. Set it to at least %d (plus ~10 s for the audit flush), or leave it null to derive it." (include "codec-server.gracePeriod" . | int) (int $v.preStopSleepSeconds) $shutdown $needed) -}}
{{- end -}}

{{- /* PostgreSQL-only settings. */ -}}
{{- if and (include "codec-server.migrationJob" .) (ne $v.auditDatabase "postgres") -}}
{{- fail "migrations.job.enabled runs `codec-server migrate` as a Job against a shared database: it needs auditDatabase = postgres (the SQLite file lives in the server pod and migrates at start)." -}}
{{- end -}}
{{- if and $v.auditDatabaseCa.existingSecret (ne $v.auditDatabase "postgres") -}}
{{- fail "auditDatabaseCa is the CA of a PostgreSQL server: it needs auditDatabase = postgres." -}}
{{- end -}}
{{- if and $v.auditDatabaseCa.existingSecret $audit.database_ca_file -}}
{{- fail "set auditDatabaseCa.existingSecret or config.audit.database_ca_file, not both." -}}
{{- end -}}

{{- /* Autoscaling and disruption budget. */ -}}
{{- $hpa := $v.autoscaling -}}
{{- if $hpa.enabled -}}
{{- if gt (int $hpa.minReplicas) (int $hpa.maxReplicas) -}}
{{- fail (printf "autoscaling.minReplicas (%d) is greater than autoscaling.maxReplicas (%d)." (int $hpa.minReplicas) (int $hpa.maxReplicas)) -}}
{{- end -}}
{{- if not (or $hpa.targetCPUUtilizationPercentage $hpa.targetMemoryUtilizationPercentage) -}}
{{- fail "autoscaling.enabled needs a target: autoscaling.targetCPUUtilizationPercentage and/or targetMemoryUtilizationPercentage." -}}
{{- end -}}
{{- $requests := ($v.resources | default dict).requests | default dict -}}
{{- if and $hpa.targetCPUUtilizationPercentage (not $requests.cpu) -}}
{{- fail "autoscaling.targetCPUUtilizationPercentage is a percentage of the CPU request: set resources.requests.cpu." -}}
{{- end -}}
{{- if and $hpa.targetMemoryUtilizationPercentage (not $requests.memory) -}}
{{- fail "autoscaling.targetMemoryUtilizationPercentage is a percentage of the memory request: set resources.requests.memory." -}}
{{- end -}}
{{- end -}}
{{- $pdb := $v.podDisruptionBudget -}}
{{- if include "codec-server.pdbEnabled" . -}}
{{- if and (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both." -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "string" $pdb.minAvailable)) -}}
{{- $floor := ternary (int $hpa.minReplicas) (int $v.replicaCount) (eq (toString $hpa.enabled) "true") -}}
{{- if ge (int $pdb.minAvailable) $floor -}}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) is not below the replica count (%d): no pod could ever be evicted, so node drains would hang. Lower it, use maxUnavailable, or add replicas." (int $pdb.minAvailable) $floor) -}}
{{- end -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $pdb.maxUnavailable)) (not (kindIs "string" $pdb.maxUnavailable)) (eq (int $pdb.maxUnavailable) 0) -}}
{{- fail "podDisruptionBudget.maxUnavailable = 0 means no pod could ever be evicted, so node drains would hang." -}}
{{- end -}}
{{- end -}}

{{- /* Last, so the settings above are named first: there is no public image to fall back on. */ -}}
{{- if not $v.image.repository -}}
{{- fail "image.repository is required: build the image with the repository's Dockerfile, push it to your registry and set image.repository (and image.digest to pin it)." -}}
{{- end -}}
{{- end -}}
