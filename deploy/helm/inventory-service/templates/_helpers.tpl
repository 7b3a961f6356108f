{{/* Chart name, at most 63 characters. */}}
{{- define "inventory-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, unless the release name already holds the chart name. */}}
{{- define "inventory-service.fullname" -}}
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

{{/* chart-version label value. */}}
{{- define "inventory-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select this release's pods (server and migration alike). */}}
{{- define "inventory-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inventory-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "inventory-service.labels" -}}
helm.sh/chart: {{ include "inventory-service.chart" . }}
{{ include "inventory-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shop
{{- end -}}

{{/* Labels that select the server pods only. */}}
{{- define "inventory-service.serverSelectorLabels" -}}
{{ include "inventory-service.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{/* Name of the pods' ServiceAccount. */}}
{{- define "inventory-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "inventory-service.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image reference: repository@digest, else repository:tag (never latest). */}}
{{- define "inventory-service.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag must be a fixed version, not latest" -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Partitions of the consumed topics, as an int. */}}
{{- define "inventory-service.partitions" -}}
{{- .Values.config.KAFKA_TOPIC_PARTITIONS | default 3 | int -}}
{{- end -}}

{{/* Pod securityContext shared by the server and the migration. */}}
{{- define "inventory-service.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext shared by the server and the migration. */}}
{{- define "inventory-service.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Secrets are files, never environment values. Fixed paths inside the pods:
  /var/run/secrets/inventory/  database-url, jwt-secret, kafka-sasl-password, kafka-ssl-key-password
  /etc/inventory/kafka/        ca.crt, tls.crt, tls.key (Kafka TLS)
  /etc/inventory/postgres/     ca.crt, tls.crt, tls.key (PostgreSQL TLS, named in DATABASE_URL)
Each file is 0440, owned by root and the pod's fsGroup 10001: uid 10001 reads it
through its group, nobody else can.
*/}}
{{- define "inventory-service.secretsDir" -}}/var/run/secrets/inventory{{- end -}}
{{- define "inventory-service.kafkaTlsDir" -}}/etc/inventory/kafka{{- end -}}
{{- define "inventory-service.postgresTlsDir" -}}/etc/inventory/postgres{{- end -}}

{{/* Is the Kafka SASL password / TLS client key password / CA / client certificate mounted? ("true" or "") */}}
{{- define "inventory-service.kafkaSasl" -}}
{{- if has .Values.kafka.security.protocol (list "SASL_PLAINTEXT" "SASL_SSL") }}true{{ end -}}
{{- end -}}
{{- define "inventory-service.kafkaTls" -}}
{{- if or .Values.kafka.security.tls.caSecret.name .Values.kafka.security.tls.clientCertSecret.name }}true{{ end -}}
{{- end -}}

{{/*
The projected volume "secrets" at secretsDir. Argument: dict "root" $ "for" one of
server (database URL, JWT secret, Kafka passwords), migration (database URL),
topics (Kafka passwords). Renders nothing when there is nothing to mount.
*/}}
{{- define "inventory-service.secretsVolume" -}}
{{- $v := .root.Values -}}
{{- $for := .for -}}
{{- $sources := list -}}
{{- if has $for (list "server" "migration") -}}
{{- $items := list (dict "key" (required "secrets.databaseUrlKey is required" $v.secrets.databaseUrlKey) "path" "database-url") -}}
{{- if and (eq $for "server") $v.secrets.jwtSecretKey -}}
{{- $items = append $items (dict "key" $v.secrets.jwtSecretKey "path" "jwt-secret") -}}
{{- end -}}
{{- $sources = append $sources (dict "secret" (dict "name" (required "secrets.existingSecret is required" $v.secrets.existingSecret) "items" $items)) -}}
{{- end -}}
{{- if has $for (list "server" "topics") -}}
{{- if include "inventory-service.kafkaSasl" .root -}}
{{- $s := $v.kafka.security.sasl.passwordSecret -}}
{{- $sources = append $sources (dict "secret" (dict "name" $s.name "items" (list (dict "key" $s.key "path" "kafka-sasl-password")))) -}}
{{- end -}}
{{- with $v.kafka.security.tls.keyPasswordSecret -}}
{{- if .name -}}
{{- $sources = append $sources (dict "secret" (dict "name" .name "items" (list (dict "key" .key "path" "kafka-ssl-key-password")))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $sources }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- toYaml $sources | nindent 6 }}
{{- end -}}
{{- end -}}

{{/* Its mount (same argument). */}}
{{- define "inventory-service.secretsMount" -}}
{{- if include "inventory-service.secretsVolume" . }}
- name: secrets
  mountPath: {{ include "inventory-service.secretsDir" .root }}
  readOnly: true
{{- end -}}
{{- end -}}

{{/* The Kafka TLS volume (CA, client certificate and key) and its mount. */}}
{{- define "inventory-service.kafkaTlsVolume" -}}
{{- $tls := .Values.kafka.security.tls -}}
{{- if include "inventory-service.kafkaTls" . }}
- name: kafka-tls
  projected:
    defaultMode: 0440
    sources:
      {{- with $tls.caSecret }}
      {{- if .name }}
      - secret:
          name: {{ .name }}
          items:
            - key: {{ .key }}
              path: ca.crt
      {{- end }}
      {{- end }}
      {{- with $tls.clientCertSecret }}
      {{- if .name }}
      - secret:
          name: {{ .name }}
          items:
            - key: {{ .certKey }}
              path: tls.crt
            - key: {{ .keyKey }}
              path: tls.key
      {{- end }}
      {{- end }}
{{- end -}}
{{- end -}}
{{- define "inventory-service.kafkaTlsMount" -}}
{{- if include "inventory-service.kafkaTls" . }}
- name: kafka-tls
  mountPath: {{ include "inventory-service.kafkaTlsDir" . }}
  readOnly: true
{{- end -}}
{{- end -}}

{{/* The PostgreSQL TLS volume (CA, optional client certificate and key) and its mount. */}}
{{- define "inventory-service.postgresTlsVolume" -}}
{{- with .Values.postgres.tls }}
{{- if .secretName }}
- name: postgres-tls
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
    items:
      - key: {{ .caKey }}
        path: ca.crt
      {{- if .clientCert }}
      - key: {{ .certKey }}
        path: tls.crt
      - key: {{ .keyKey }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end -}}
{{- end -}}
{{- define "inventory-service.postgresTlsMount" -}}
{{- if .Values.postgres.tls.secretName }}
- name: postgres-tls
  mountPath: {{ include "inventory-service.postgresTlsDir" . }}
  readOnly: true
{{- end -}}
{{- end -}}

{{/* DATABASE_URL_FILE (server and migration). */}}
{{- define "inventory-service.databaseUrlEnv" -}}
- name: DATABASE_URL_FILE
  value: {{ printf "%s/database-url" (include "inventory-service.secretsDir" .) | quote }}
{{- end -}}

{{/* The Kafka security variables (server and topics Job); nothing for PLAINTEXT. */}}
{{- define "inventory-service.kafkaEnv" -}}
{{- $sec := .Values.kafka.security -}}
{{- if ne $sec.protocol "PLAINTEXT" }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ $sec.protocol | quote }}
{{- end }}
{{- if include "inventory-service.kafkaSasl" . }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $sec.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ $sec.sasl.username | quote }}
- name: KAFKA_SASL_PASSWORD_FILE
  value: {{ printf "%s/kafka-sasl-password" (include "inventory-service.secretsDir" .) | quote }}
{{- end }}
{{- if $sec.tls.caSecret.name }}
- name: KAFKA_SSL_CA_LOCATION
  value: {{ printf "%s/ca.crt" (include "inventory-service.kafkaTlsDir" .) | quote }}
{{- end }}
{{- if $sec.tls.clientCertSecret.name }}
- name: KAFKA_SSL_CERTIFICATE_LOCATION
  value: {{ printf "%s/tls.crt" (include "inventory-service.kafkaTlsDir" .) | quote }}
- name: KAFKA_SSL_KEY_LOCATION
  value: {{ printf "%s/tls.key" (include "inventory-service.kafkaTlsDir" .) | quote }}
{{- end }}
{{- if $sec.tls.keyPasswordSecret.name }}
- name: KAFKA_SSL_KEY_PASSWORD_FILE
  value: {{ printf "%s/kafka-ssl-key-password" (include "inventory-service.secretsDir" .) | quote }}
{{- end }}
{{- end -}}

{{/* The TCP port of a URL: its explicit port, else 443 for https, 80 for http. */}}
{{- define "inventory-service.urlPort" -}}
{{- $authority := regexFind "^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+" . -}}
{{- $port := regexFind ":[0-9]+$" $authority -}}
{{- if $port -}}{{ trimPrefix ":" $port }}
{{- else if hasPrefix "https:" (lower .) -}}443
{{- else -}}80
{{- end -}}
{{- end -}}

{{/*
Egress ports as a JSON list: networkPolicy.kafkaPorts, else the ports of
config.KAFKA_BOOTSTRAP_SERVERS; networkPolicy.identityProviderPorts, else the
port of JWT_JWKS_URL (or of JWT_ISSUER with discovery); networkPolicy.otlpPorts,
else the port of OTEL_EXPORTER_OTLP_ENDPOINT. Empty lists when the feature is off.
*/}}
{{- define "inventory-service.kafkaPorts" -}}
{{- $ports := list -}}
{{- if .Values.config.KAFKA_BOOTSTRAP_SERVERS -}}
{{- if .Values.networkPolicy.kafkaPorts -}}
{{- $ports = .Values.networkPolicy.kafkaPorts -}}
{{- else -}}
{{- range splitList "," .Values.config.KAFKA_BOOTSTRAP_SERVERS -}}
{{- $p := regexFind ":[0-9]+$" (trim .) -}}
{{- $ports = append $ports (ternary (trimPrefix ":" $p) "9092" (ne $p "") | int) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (uniq $ports) -}}
{{- end -}}
{{- define "inventory-service.identityProviderPorts" -}}
{{- $c := .Values.config -}}
{{- $url := "" -}}
{{- if $c.JWT_JWKS_URL -}}{{- $url = $c.JWT_JWKS_URL -}}
{{- else if eq (toString $c.JWT_OIDC_DISCOVERY) "true" -}}{{- $url = $c.JWT_ISSUER -}}
{{- end -}}
{{- $ports := list -}}
{{- if $url -}}
{{- $ports = .Values.networkPolicy.identityProviderPorts | default (list (include "inventory-service.urlPort" $url | int)) -}}
{{- end -}}
{{- toJson $ports -}}
{{- end -}}
{{- define "inventory-service.otlpPorts" -}}
{{- $url := .Values.config.OTEL_EXPORTER_OTLP_ENDPOINT -}}
{{- $ports := list -}}
{{- if $url -}}
{{- $ports = .Values.networkPolicy.otlpPorts | default (list (include "inventory-service.urlPort" $url | int)) -}}
{{- end -}}
{{- toJson $ports -}}
{{- end -}}

{{/* Fails on value combinations that cannot work. */}}
{{- define "inventory-service.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled -}}
{{- fail "autoscaling.enabled and keda.enabled exclude each other: KEDA creates its own HPA" -}}
{{- end -}}
{{- if and .Values.jwtPublicKey.enabled (not .Values.jwtPublicKey.secretName) -}}
{{- fail "jwtPublicKey.secretName is required when jwtPublicKey.enabled" -}}
{{- end -}}
{{- $c := .Values.config -}}
{{- $discovery := eq (toString $c.JWT_OIDC_DISCOVERY) "true" -}}
{{- $jwks := or $c.JWT_JWKS_URL $discovery -}}
{{- if and $discovery (not $c.JWT_ISSUER) -}}
{{- fail "config.JWT_OIDC_DISCOVERY=true needs config.JWT_ISSUER (the keys are discovered from <issuer>/.well-known/openid-configuration)" -}}
{{- end -}}
{{- if and $c.JWT_JWKS_URL $discovery -}}
{{- fail "set config.JWT_JWKS_URL or config.JWT_OIDC_DISCOVERY=true, not both" -}}
{{- end -}}
{{- if and $jwks (or .Values.secrets.jwtSecretKey .Values.jwtPublicKey.enabled) -}}
{{- fail "keys from the identity provider (config.JWT_JWKS_URL or JWT_OIDC_DISCOVERY) exclude a fixed key: set secrets.jwtSecretKey to \"\" and leave jwtPublicKey off" -}}
{{- end -}}
{{- if not (or .Values.secrets.jwtSecretKey .Values.jwtPublicKey.enabled $jwks) -}}
{{- fail "no token key: set secrets.jwtSecretKey, enable jwtPublicKey, or set config.JWT_JWKS_URL (or JWT_OIDC_DISCOVERY=true with JWT_ISSUER); without a key every protected route answers 401" -}}
{{- end -}}
{{- $sec := .Values.kafka.security -}}
{{- if not (has $sec.protocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) -}}
{{- fail (printf "kafka.security.protocol %q: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL" (toString $sec.protocol)) -}}
{{- end -}}
{{- if include "inventory-service.kafkaSasl" . -}}
{{- if not (has $sec.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) -}}
{{- fail (printf "kafka.security.protocol %s needs kafka.security.sasl.mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" $sec.protocol) -}}
{{- end -}}
{{- if not (and $sec.sasl.username $sec.sasl.passwordSecret.name $sec.sasl.passwordSecret.key) -}}
{{- fail (printf "kafka.security.protocol %s needs kafka.security.sasl.username and passwordSecret.name/key" $sec.protocol) -}}
{{- end -}}
{{- else if or $sec.sasl.mechanism $sec.sasl.username $sec.sasl.passwordSecret.name -}}
{{- fail (printf "kafka.security.sasl is set but kafka.security.protocol is %s (use SASL_SSL or SASL_PLAINTEXT)" $sec.protocol) -}}
{{- end -}}
{{- if and (include "inventory-service.kafkaTls" .) (not (has $sec.protocol (list "SSL" "SASL_SSL"))) -}}
{{- fail (printf "kafka.security.tls secrets are set but kafka.security.protocol is %s (use SSL or SASL_SSL)" $sec.protocol) -}}
{{- end -}}
{{- if and $sec.tls.keyPasswordSecret.name (not $sec.tls.clientCertSecret.name) -}}
{{- fail "kafka.security.tls.keyPasswordSecret needs kafka.security.tls.clientCertSecret (the key it opens)" -}}
{{- end -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) 70 -}}
{{- fail "terminationGracePeriodSeconds must exceed the service's drain (65 s): use 70 or more" -}}
{{- end -}}
{{- end -}}
