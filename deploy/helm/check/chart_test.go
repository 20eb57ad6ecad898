// Package check renders the Helm chart with Helm's own engine and validates every manifest
// against the Kubernetes API types, strictly (an unknown or misspelt field fails). It is a module
// of its own so that Helm and the Kubernetes API stay out of erpstream's dependencies; make test
// runs it (tools built from the Go module proxy, nothing downloaded from elsewhere).
package check

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

type manifest struct {
	source string
	kind   string
	body   []byte
}

func render(t *testing.T, overrides map[string]any) []manifest {
	t.Helper()
	chart, err := loader.Load("../erpstream")
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(chart, overrides, chartutil.ReleaseOptions{Name: "erp", Namespace: "erp", Revision: 3, IsInstall: true},
		chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(chart, vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	var names []string
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	var docs []manifest
	for _, n := range names {
		for _, doc := range strings.Split(out[n], "\n---") {
			if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" || !strings.Contains(doc, "kind:") {
				continue
			}
			var head struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", n, err, doc)
			}
			docs = append(docs, manifest{source: n, kind: head.Kind, body: []byte(doc)})
		}
	}
	return docs
}

// strict decodes a manifest into its API type, refusing unknown fields.
func strict(t *testing.T, m manifest, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(m.body, into); err != nil {
		t.Fatalf("%s (%s) does not match the Kubernetes API: %v\n%s", m.source, m.kind, err, m.body)
	}
}

func TestChartRendersValidManifests(t *testing.T) {
	for name, overrides := range map[string]map[string]any{
		"defaults":  nil,
		"tls files": {"tlsSecret": "erpstream-tls", "services": map[string]any{"process": map[string]any{"replicas": 3}}},
	} {
		t.Run(name, func(t *testing.T) {
			deployments := map[string]appsv1.Deployment{}
			services := map[string]bool{}
			jobs := 0
			for _, m := range render(t, overrides) {
				switch m.kind {
				case "Deployment":
					var d appsv1.Deployment
					strict(t, m, &d)
					deployments[d.Labels["app.kubernetes.io/component"]] = d
				case "Service":
					var s corev1.Service
					strict(t, m, &s)
					services[s.Labels["app.kubernetes.io/component"]] = true
				case "Job":
					var j batchv1.Job
					strict(t, m, &j)
					jobs++
					c := j.Spec.Template.Spec.Containers[0]
					if fmt.Sprint(c.Args) != "[admin init]" || j.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" {
						t.Errorf("init job: args %v, annotations %v", c.Args, j.Annotations)
					}
				default:
					t.Errorf("%s: unexpected kind %s", m.source, m.kind)
				}
			}
			if jobs != 1 {
				t.Errorf("%d init jobs, want 1", jobs)
			}
			for _, svc := range []string{"ingest", "process", "project", "query", "outbound"} {
				d, ok := deployments[svc]
				if !ok {
					t.Errorf("no Deployment for %s", svc)
					continue
				}
				c := d.Spec.Template.Spec.Containers[0]
				if fmt.Sprint(c.Args) != "["+svc+"]" {
					t.Errorf("%s runs %v", svc, c.Args)
				}
				if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/livez" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
					t.Errorf("%s probes: %+v %+v", svc, c.LivenessProbe, c.ReadinessProbe)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
					t.Errorf("%s has no resource requests", svc)
				}
				if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "erpstream" {
					t.Errorf("%s secrets: %+v", svc, c.EnvFrom)
				}
				if !writableTmp(d.Spec.Template.Spec) {
					t.Errorf("%s has no emptyDir at /tmp under its read-only root (admin commands run there need it)", svc)
				}
				if d.Spec.Selector == nil || d.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != d.Spec.Template.Labels["app.kubernetes.io/component"] {
					t.Errorf("%s selector does not select its pods", svc)
				}
			}
			for _, svc := range []string{"ingest", "query", "outbound"} {
				if !services[svc] {
					t.Errorf("no Service for %s", svc)
				}
			}
			if overrides != nil {
				if n := *deployments["process"].Spec.Replicas; n != 3 {
					t.Errorf("process replicas %d", n)
				}
				if v := deployments["ingest"].Spec.Template.Spec.Volumes; len(v) != 2 || v[1].Secret == nil || v[1].Secret.SecretName != "erpstream-tls" {
					t.Errorf("tls volume: %+v", v)
				}
			}
		})
	}
}

// writableTmp says whether the pod mounts an emptyDir at /tmp in its container.
func writableTmp(pod corev1.PodSpec) bool {
	for _, m := range pod.Containers[0].VolumeMounts {
		if m.MountPath != "/tmp" || m.ReadOnly {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.EmptyDir != nil {
				return true
			}
		}
	}
	return false
}
