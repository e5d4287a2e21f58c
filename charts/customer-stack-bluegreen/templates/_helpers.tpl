{{- define "bluegreen.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "bluegreen.labels" -}}
app.kubernetes.io/name: {{ .component }}
{{ include "bluegreen.selector" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version }}
{{- end }}

{{- /* The active slot, checked: blue or green, and it must have an image tag. */ -}}
{{- define "bluegreen.activeSlot" -}}
{{- $values := index .root.Values .component -}}
{{- $slot := $values.activeSlot | default "blue" -}}
{{- if not (has $slot (list "blue" "green")) -}}
{{- fail (printf "%s.activeSlot must be blue or green, not %q" .component $slot) -}}
{{- end -}}
{{- if not (index $values.slots $slot).tag -}}
{{- fail (printf "%s.activeSlot is %s, but %s.slots.%s.tag is empty: deploy that slot first" .component $slot .component $slot) -}}
{{- end -}}
{{- $slot -}}
{{- end }}
