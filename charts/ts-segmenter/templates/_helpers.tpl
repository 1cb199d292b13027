{{/*
Expand the name of the chart.
*/}}
{{- define "ts-segmenter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "ts-segmenter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A name derived from the fullname plus a suffix, still capped at 63 characters.
Usage: include "ts-segmenter.componentName" (dict "context" . "suffix" "gateway")
*/}}
{{- define "ts-segmenter.componentName" -}}
{{- $full := include "ts-segmenter.fullname" .context }}
{{- $max := sub 62 (len .suffix) | int }}
{{- printf "%s-%s" ($full | trunc $max | trimSuffix "-") .suffix }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "ts-segmenter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels (stable: never add labels here that change between upgrades).
*/}}
{{- define "ts-segmenter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ts-segmenter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels shared by objects the gateway/trainer create from the templates (no Helm ownership).
*/}}
{{- define "ts-segmenter.baseLabels" -}}
{{ include "ts-segmenter.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/part-of: {{ include "ts-segmenter.name" . }}
{{- end }}

{{/*
Common labels of the objects Helm manages.
*/}}
{{- define "ts-segmenter.labels" -}}
helm.sh/chart: {{ include "ts-segmenter.chart" . }}
{{ include "ts-segmenter.baseLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Name of the ServiceAccount of a component (gateway, trainer or predictor).
Usage: include "ts-segmenter.serviceAccountName" (dict "context" . "component" "gateway")
*/}}
{{- define "ts-segmenter.serviceAccountName" -}}
{{- $sa := index .context.Values.serviceAccounts .component }}
{{- if $sa.create }}
{{- default (include "ts-segmenter.componentName" (dict "context" .context "suffix" .component)) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/*
The image reference; the CUDA tag suffix is appended for GPU workloads.
Usage: include "ts-segmenter.image" (dict "context" . "gpu" true)
*/}}
{{- define "ts-segmenter.image" -}}
{{- $img := .context.Values.image }}
{{- $tag := default .context.Chart.AppVersion $img.tag | toString }}
{{- if .gpu }}
{{- $tag = printf "%s%s" $tag $img.cudaTagSuffix }}
{{- end }}
{{- printf "%s:%s" $img.repository $tag }}
{{- end }}

{{/*
Name of the models PersistentVolumeClaim.
*/}}
{{- define "ts-segmenter.modelsClaimName" -}}
{{- if .Values.persistence.existingClaim }}
{{- .Values.persistence.existingClaim }}
{{- else }}
{{- include "ts-segmenter.componentName" (dict "context" . "suffix" "models") }}
{{- end }}
{{- end }}

{{/*
Name of the Secret and key holding the Label Studio API key.
*/}}
{{- define "ts-segmenter.labelStudioSecretName" -}}
{{- if .Values.labelStudio.existingSecret }}
{{- .Values.labelStudio.existingSecret }}
{{- else }}
{{- include "ts-segmenter.componentName" (dict "context" . "suffix" "label-studio") }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the basic-auth credentials.
*/}}
{{- define "ts-segmenter.basicAuthSecretName" -}}
{{- if .Values.basicAuth.existingSecret }}
{{- .Values.basicAuth.existingSecret }}
{{- else }}
{{- include "ts-segmenter.componentName" (dict "context" . "suffix" "basic-auth") }}
{{- end }}
{{- end }}

{{/*
Names of the two ConfigMaps.
*/}}
{{- define "ts-segmenter.trainingConfigMapName" -}}
{{- include "ts-segmenter.componentName" (dict "context" . "suffix" "training") }}
{{- end }}

{{- define "ts-segmenter.templatesConfigMapName" -}}
{{- include "ts-segmenter.componentName" (dict "context" . "suffix" "templates") }}
{{- end }}

{{/*
Where the templates ConfigMap is mounted in the gateway and trainer pods.
*/}}
{{- define "ts-segmenter.templatesDir" -}}
/etc/ts-segmenter/templates
{{- end }}

{{/*
Prefix of the per-project InferenceService names: a DNS-1035 label prefix of at most 42
characters (so that "<prefix>-<10-digit id>-predictor" fits 63), starting with a letter.
*/}}
{{- define "ts-segmenter.isvcNamePrefix" -}}
{{- if .Values.isvcNamePrefix }}
{{- .Values.isvcNamePrefix }}
{{- else }}
{{- $prefix := printf "%s-p" (include "ts-segmenter.fullname" .) }}
{{- if not (regexMatch "^[a-z]" $prefix) }}
{{- $prefix = printf "p%s" $prefix }}
{{- end }}
{{- $prefix | trunc 42 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Resources of a container, with the GPU limit added when gpu.enabled. Quantities are rendered as
strings (the Kubernetes Python client's models reject integer quantities).
Usage: include "ts-segmenter.resources" (dict "resources" .Values.trainer.resources "gpu" .Values.trainer.gpu)
*/}}
{{- define "ts-segmenter.resources" -}}
{{- $res := dict }}
{{- range $section, $quantities := (default (dict) .resources) }}
{{- if kindIs "map" $quantities }}
{{- $q := dict }}
{{- range $name, $value := $quantities }}
{{- $_ := set $q $name (toString $value) }}
{{- end }}
{{- $_ := set $res $section $q }}
{{- else }}
{{- $_ := set $res $section $quantities }}
{{- end }}
{{- end }}
{{- if .gpu.enabled }}
{{- $limits := default (dict) (get $res "limits") }}
{{- $_ := set $limits .gpu.resourceName (toString .gpu.count) }}
{{- $_ := set $res "limits" $limits }}
{{- end }}
{{- if $res }}
{{- toYaml $res }}
{{- end }}
{{- end }}

{{/*
nodeSelector of a workload: the component's own merged with its gpu.nodeSelector when gpu.enabled.
Usage: include "ts-segmenter.nodeSelector" .Values.trainer
*/}}
{{- define "ts-segmenter.nodeSelector" -}}
{{- $sel := deepCopy (default (dict) .nodeSelector) }}
{{- if .gpu.enabled }}
{{- $sel = merge (deepCopy (default (dict) .gpu.nodeSelector)) $sel }}
{{- end }}
{{- if $sel }}
{{- toYaml $sel }}
{{- end }}
{{- end }}

{{/*
Tolerations of a workload: the component's own plus gpu.tolerations when gpu.enabled.
Usage: include "ts-segmenter.tolerations" .Values.trainer
*/}}
{{- define "ts-segmenter.tolerations" -}}
{{- $tol := default (list) .tolerations }}
{{- if .gpu.enabled }}
{{- $tol = concat $tol (default (list) .gpu.tolerations) }}
{{- end }}
{{- if $tol }}
{{- toYaml $tol }}
{{- end }}
{{- end }}

{{/*
The env var holding the Label Studio API key (a Secret reference).
*/}}
{{- define "ts-segmenter.labelStudioEnv" -}}
- name: LABEL_STUDIO_URL
  value: {{ .Values.labelStudio.url | quote }}
- name: LABEL_STUDIO_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "ts-segmenter.labelStudioSecretName" . }}
      key: {{ .Values.labelStudio.existingSecretKey }}
{{- end }}

{{/*
The training Job template (a complete batch/v1 Job). The gateway overwrites only metadata.name,
the ts-segmenter.io/project labels and containers[0].args.
*/}}
{{- define "ts-segmenter.jobTemplate" -}}
{{- $gpu := .Values.trainer.gpu.enabled -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "ts-segmenter.componentName" (dict "context" . "suffix" "train-placeholder") }}
  labels:
    {{- include "ts-segmenter.baseLabels" . | nindent 4 }}
    app.kubernetes.io/component: trainer
    ts-segmenter.io/project: "placeholder"
spec:
  backoffLimit: {{ .Values.trainer.backoffLimit }}
  ttlSecondsAfterFinished: {{ .Values.trainer.ttlSecondsAfterFinished }}
  activeDeadlineSeconds: {{ .Values.trainer.activeDeadlineSeconds }}
  # Exit code 2 is bad input (no usable labelled tasks, an unusable label config): retrying cannot help.
  podFailurePolicy:
    rules:
      - action: FailJob
        onExitCodes:
          containerName: trainer
          operator: In
          values: [2]
  template:
    metadata:
      labels:
        {{- include "ts-segmenter.baseLabels" . | nindent 8 }}
        app.kubernetes.io/component: trainer
        ts-segmenter.io/project: "placeholder"
      {{- with .Values.trainer.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "ts-segmenter.serviceAccountName" (dict "context" . "component" "trainer") }}
      automountServiceAccountToken: true
      restartPolicy: Never
      {{- with .Values.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: trainer
          image: {{ include "ts-segmenter.image" (dict "context" . "gpu" $gpu) | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          command: ["python", "-m", "trainer"]
          args: ["--project", "placeholder"]
          envFrom:
            - configMapRef:
                name: {{ include "ts-segmenter.trainingConfigMapName" . }}
          env:
            - name: KUBERNETES_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: MODEL_DIR
              value: /models
            - name: MODELS_PVC_NAME
              value: {{ include "ts-segmenter.modelsClaimName" . | quote }}
            - name: PUBLISHER
              value: kubernetes
            - name: ISVC_TEMPLATE_PATH
              value: {{ printf "%s/inferenceservice.yaml" (include "ts-segmenter.templatesDir" .) | quote }}
            - name: ISVC_NAME_PREFIX
              value: {{ include "ts-segmenter.isvcNamePrefix" . | quote }}
            - name: KEEP_VERSIONS
              value: {{ .Values.trainer.keepVersions | quote }}
            - name: LOG_LEVEL
              value: {{ .Values.logLevel | quote }}
            {{- if $gpu }}
            - name: DEVICE
              value: cuda
            {{- end }}
            {{- include "ts-segmenter.labelStudioEnv" . | nindent 12 }}
            {{- with .Values.trainer.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with (include "ts-segmenter.resources" (dict "resources" .Values.trainer.resources "gpu" .Values.trainer.gpu)) }}
          resources:
            {{- . | nindent 12 }}
          {{- end }}
          {{- with .Values.containerSecurityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: models
              mountPath: /models
            - name: templates
              mountPath: {{ include "ts-segmenter.templatesDir" . }}
              readOnly: true
            - name: tmp
              mountPath: /tmp
      {{- with (include "ts-segmenter.nodeSelector" .Values.trainer) }}
      nodeSelector:
        {{- . | nindent 8 }}
      {{- end }}
      {{- with (include "ts-segmenter.tolerations" .Values.trainer) }}
      tolerations:
        {{- . | nindent 8 }}
      {{- end }}
      {{- with .Values.trainer.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumes:
        - name: models
          persistentVolumeClaim:
            claimName: {{ include "ts-segmenter.modelsClaimName" . }}
        - name: templates
          configMap:
            name: {{ include "ts-segmenter.templatesConfigMapName" . }}
        - name: tmp
          emptyDir: {}
{{- end }}

{{/*
The InferenceService template (a complete serving.kserve.io/v1beta1 InferenceService). The trainer
overwrites only metadata.name, the ts-segmenter.io/project labels, the model-version annotation,
containers[0].args, the STORAGE_URI env value and the readiness probe path.
*/}}
{{- define "ts-segmenter.isvcTemplate" -}}
{{- $p := .Values.predictor -}}
{{- $name := printf "%s-0" (include "ts-segmenter.isvcNamePrefix" .) -}}
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {{ $name }}
  labels:
    {{- include "ts-segmenter.baseLabels" . | nindent 4 }}
    app.kubernetes.io/component: predictor
    ts-segmenter.io/project: "placeholder"
  annotations:
    serving.kserve.io/deploymentMode: {{ $p.deploymentMode }}
    ts-segmenter.io/model-version: "placeholder"
spec:
  predictor:
    minReplicas: {{ $p.minReplicas }}
    maxReplicas: {{ $p.maxReplicas }}
    {{- with $p.scaleMetric }}
    scaleMetric: {{ . }}
    {{- end }}
    {{- if $p.scaleTarget }}
    scaleTarget: {{ $p.scaleTarget }}
    {{- end }}
    {{- if eq $p.deploymentMode "Standard" }}
    deploymentStrategy:
      type: RollingUpdate
      rollingUpdate:
        maxUnavailable: 0
        maxSurge: 1
    {{- end }}
    labels:
      {{- include "ts-segmenter.baseLabels" . | nindent 6 }}
      app.kubernetes.io/component: predictor
      ts-segmenter.io/project: "placeholder"
    {{- with $p.podAnnotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    serviceAccountName: {{ include "ts-segmenter.serviceAccountName" (dict "context" . "component" "predictor") }}
    {{- if eq $p.deploymentMode "Standard" }}
    {{- /* Knative's PodSpec field mask may drop it; the predictor ServiceAccount disables automount too. */}}
    automountServiceAccountToken: false
    {{- end }}
    {{- with .Values.podSecurityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with (include "ts-segmenter.nodeSelector" $p) }}
    nodeSelector:
      {{- . | nindent 6 }}
    {{- end }}
    {{- with (include "ts-segmenter.tolerations" $p) }}
    tolerations:
      {{- . | nindent 6 }}
    {{- end }}
    {{- with $p.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      - name: kserve-container
        image: {{ include "ts-segmenter.image" (dict "context" . "gpu" $p.gpu.enabled) | quote }}
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        command: ["python", "-m", "predictor"]
        args: ["--model_name", {{ $name | quote }}, "--model_dir", "/mnt/models"]
        env:
          - name: PROTOCOL
            value: v2
          - name: STORAGE_URI
            value: {{ printf "pvc://%s/placeholder/placeholder" (include "ts-segmenter.modelsClaimName" .) | quote }}
          - name: LOG_LEVEL
            value: {{ .Values.logLevel | quote }}
          {{- if $p.gpu.enabled }}
          - name: DEVICE
            value: cuda
          {{- end }}
          {{- with $p.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        ports:
          - name: http1
            containerPort: 8080
            protocol: TCP
        {{- with (include "ts-segmenter.resources" (dict "resources" $p.resources "gpu" $p.gpu)) }}
        resources:
          {{- . | nindent 10 }}
        {{- end }}
        readinessProbe:
          httpGet:
            path: {{ printf "/v2/models/%s/ready" $name }}
            port: 8080
          periodSeconds: 5
          failureThreshold: 3
        livenessProbe:
          httpGet:
            path: /v2/health/live
            port: 8080
          initialDelaySeconds: 10
          periodSeconds: 10
          failureThreshold: 3
        {{- with .Values.containerSecurityContext }}
        securityContext:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        volumeMounts:
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: tmp
        emptyDir: {}
{{- end }}
