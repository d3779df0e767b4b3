{{/* Names and labels shared by every template. */}}
{{- define "pio.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pio.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pio.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pio.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Hardened pod and container security contexts. */}}
{{- define "pio.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pio.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The operator configuration file, without the settings left empty. */}}
{{- define "pio.config" -}}
{{- $c := dict "clusterName" .Values.clusterName "deletionPolicy" .Values.deletionPolicy "driftInterval" .Values.driftInterval -}}
{{- $oidc := dict -}}
{{- with .Values.oidc.issuerUrl }}{{ $_ := set $oidc "issuerUrl" . }}{{ end -}}
{{- with .Values.oidc.providerArn }}{{ $_ := set $oidc "providerArn" . }}{{ end -}}
{{- with .Values.oidc.additionalProviderArns }}{{ $_ := set $oidc "additionalProviderArns" . }}{{ end -}}
{{- if .Values.oidc.manage }}{{ $_ := set $oidc "manage" true }}{{ end -}}
{{- range $key := list "clientIds" "thumbprints" "connectTo" "issuerCa" "checkInterval" }}{{ with index $.Values.oidc $key }}{{ $_ := set $oidc $key . }}{{ end }}{{ end -}}
{{- $publish := dict -}}
{{- with .Values.oidc.publish.s3Bucket }}{{ $_ := set $publish "s3Bucket" . }}{{ end -}}
{{- with .Values.oidc.publish.keyRetention }}{{ $_ := set $publish "keyRetention" . }}{{ end -}}
{{- if $publish }}{{ $_ := set $oidc "publish" $publish }}{{ end -}}
{{- $_ := set $c "oidc" $oidc -}}
{{- $roles := dict "allowNameOverride" .Values.roles.allowNameOverride "maxManagedPolicies" .Values.roles.maxManagedPolicies -}}
{{- with .Values.roles.namePrefix }}{{ $_ := set $roles "namePrefix" . }}{{ end -}}
{{- with .Values.roles.path }}{{ $_ := set $roles "path" . }}{{ end -}}
{{- with .Values.roles.permissionsBoundaryArn }}{{ $_ := set $roles "permissionsBoundaryArn" . }}{{ end -}}
{{- $_ := set $c "roles" $roles -}}
{{- $_ := set $c "guardrails" .Values.guardrails -}}
{{- $_ := set $c "trustPolicy" .Values.trustPolicy -}}
{{- $aws := dict "maxRequestsPerSecond" .Values.aws.maxRequestsPerSecond -}}
{{- with .Values.aws.region }}{{ $_ := set $aws "region" . }}{{ end -}}
{{- with .Values.aws.endpointUrl }}{{ $_ := set $aws "endpointUrl" . }}{{ end -}}
{{- with .Values.aws.accountId }}{{ $_ := set $aws "accountId" (toString .) }}{{ end -}}
{{- $_ := set $c "aws" $aws -}}
{{- with .Values.accounts }}{{ $_ := set $c "accounts" . }}{{ end -}}
{{- $_ := set $c "shortForm" .Values.shortForm -}}
{{- $_ := set $c "verifyAssumable" .Values.verifyAssumable -}}
{{- $requests := dict "enabled" .Values.credentialsRequests.enabled -}}
{{- with .Values.credentialsRequests.namespaces }}{{ $_ := set $requests "namespaces" . }}{{ end -}}
{{- $_ := set $c "credentialsRequests" $requests -}}
{{- $_ := set $c "allowPodRestarts" .Values.allowPodRestarts -}}
{{- $identity := dict -}}
{{- with .Values.identity.defaultMechanism }}{{ $_ := set $identity "defaultMechanism" . }}{{ end -}}
{{- with .Values.identity.allowedMechanisms }}{{ $_ := set $identity "allowedMechanisms" . }}{{ end -}}
{{- if $identity }}{{ $_ := set $c "identity" $identity }}{{ end -}}
{{- $eks := dict -}}
{{- with .Values.eks.clusterName }}{{ $_ := set $eks "clusterName" . }}{{ end -}}
{{- if and .Values.eks.maxAssociations (ne (int .Values.eks.maxAssociations) 5000) }}{{ $_ := set $eks "maxAssociations" (int .Values.eks.maxAssociations) }}{{ end -}}
{{- if $eks }}{{ $_ := set $c "eks" $eks }}{{ end -}}
{{- toYaml $c -}}
{{- end -}}
