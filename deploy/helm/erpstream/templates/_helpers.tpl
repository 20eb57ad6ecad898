{{- define "erpstream.labels" -}}
app.kubernetes.io/name: erpstream
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "erpstream.env" -}}
{{- range $k, $v := .Values.env }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
- name: ERPSTREAM_HTTP_ADDR
  value: "0.0.0.0:8080"
- name: ERPSTREAM_METRICS_ADDR
  value: "0.0.0.0:9090"
{{- end -}}

{{- define "erpstream.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
