package deploytest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

const chart = "deploy/helm/klaxon"

// helm runs tools/helm/helmcheck, the `helm lint` and `helm template` of helm
// v3 on helm's own packages (the helm CLI is too heavy a build for CI); the
// arguments are helm's, so `helm` itself runs the same commands.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testtools.Tool(t, "helm", "klaxon-tools/helm/helmcheck")
	return tryRun(root, nil, bin, args...)
}

// kubecheck validates manifests against the Kubernetes API types.
func kubecheck(t *testing.T, manifests string) (string, error) {
	t.Helper()
	bin := testtools.Tool(t, "helm", "klaxon-tools/helm/kubecheck")
	f := filepath.Join(t.TempDir(), "manifests.yaml")
	if err := os.WriteFile(f, []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	return tryRun(root, nil, bin, f)
}

// object is the part of a Kubernetes object the tests look at.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		Template    struct {
			Spec struct {
				SecurityContext map[string]any `yaml:"securityContext"`
				Containers      []struct {
					Image           string         `yaml:"image"`
					SecurityContext map[string]any `yaml:"securityContext"`
					Env             []struct {
						Name      string `yaml:"name"`
						Value     string `yaml:"value"`
						ValueFrom struct {
							FieldRef struct {
								FieldPath string `yaml:"fieldPath"`
							} `yaml:"fieldRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					Ports []struct {
						ContainerPort int `yaml:"containerPort"`
					} `yaml:"ports"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
						SubPath   string `yaml:"subPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

func decodeAll(t *testing.T, manifests string) map[string]object {
	t.Helper()
	objs := map[string]object{}
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding helm template output: %v", err)
		}
		if o.Kind != "" {
			objs[o.Kind+"/"+o.Metadata.Name] = o
		}
	}
	return objs
}

// TestHelmChartLintsAndRendersValidKubernetesObjects: helm lint --strict
// passes, and helm template's output (defaults; a configuration with an
// existing rota ConfigMap, more secrets and settings; 3 replicas on etcd over
// TLS) decodes strictly into the Kubernetes API types and is the StatefulSet
// Klaxon needs: one writer on bbolt, or replicas sharing etcd.
func TestHelmChartLintsAndRendersValidKubernetesObjects(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", chart); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	rota, err := os.ReadFile(path("rota.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name         string
		args         []string
		rotaCM       string
		wantSecret   string
		wantEnv      map[string]string
		wantReplicas int // 0: 1
		wantEtcdTLS  bool
	}{
		{name: "defaults", rotaCM: "oncall-klaxon-rota", wantSecret: "klaxon", wantEnv: map[string]string{
			"KLAXON_WEBHOOK_TOKEN_FILE": "/etc/klaxon/secrets/webhook-token",
			"KLAXON_API_TOKEN_FILE":     "/etc/klaxon/secrets/api-token",
			"KLAXON_DATA":               "/data",
			"KLAXON_ROTA":               "/etc/klaxon/rota/rota.yaml",
		}},
		{name: "existing rota, PagerDuty", rotaCM: "team-rota", wantSecret: "klaxon-secrets", args: []string{
			"--set", "rota.existingConfigMap=team-rota", "--set", "existingSecret=klaxon-secrets",
			"--set", "secretFiles.KLAXON_PAGERDUTY_ROUTING_KEY=pd-key",
			"--set", "env.KLAXON_PUBLIC_URL=https://klaxon.example.org", "--set", "serviceMonitor.enabled=true",
		}, wantEnv: map[string]string{
			"KLAXON_PAGERDUTY_ROUTING_KEY_FILE": "/etc/klaxon/secrets/pd-key",
			"KLAXON_PUBLIC_URL":                 "https://klaxon.example.org",
		}},
		{name: "3 replicas on etcd", rotaCM: "oncall-klaxon-rota", wantSecret: "klaxon", wantReplicas: 3, wantEtcdTLS: true, args: []string{
			"--set", "store=etcd", "--set", "replicas=3",
			"--set", "etcd.endpoints={https://etcd-0.etcd:2379,https://etcd-1.etcd:2379,https://etcd-2.etcd:2379}",
			"--set", "etcd.username=klaxon", "--set", "secretFiles.KLAXON_ETCD_PASSWORD=etcd-password",
			"--set", "etcd.maxTxnOps=1024", "--set", "etcd.tlsSecret=klaxon-etcd-client",
		}, wantEnv: map[string]string{
			"KLAXON_STORE":              "etcd",
			"KLAXON_ETCD_ENDPOINTS":     "https://etcd-0.etcd:2379,https://etcd-1.etcd:2379,https://etcd-2.etcd:2379",
			"KLAXON_ETCD_PREFIX":        "/klaxon/",
			"KLAXON_ETCD_USERNAME":      "klaxon",
			"KLAXON_ETCD_PASSWORD_FILE": "/etc/klaxon/secrets/etcd-password",
			"KLAXON_ETCD_MAX_TXN_OPS":   "1024",
			"KLAXON_LEADER_TTL":         "5s",
			"KLAXON_ETCD_CA_FILE":       "/etc/klaxon/etcd-tls/ca.crt",
			"KLAXON_ETCD_CERT_FILE":     "/etc/klaxon/etcd-tls/tls.crt",
			"KLAXON_ETCD_KEY_FILE":      "/etc/klaxon/etcd-tls/tls.key",
			"KLAXON_WEBHOOK_TOKEN_FILE": "/etc/klaxon/secrets/webhook-token",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"template", "oncall", chart, "--namespace", "monitoring"}, c.args...)
			out, err := helm(t, args...)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			manifests := out
			if c.args != nil { // the ServiceMonitor is a CRD kubecheck does not know
				manifests = dropKind(out, "ServiceMonitor")
			}
			if res, err := kubecheck(t, manifests); err != nil {
				t.Fatalf("Kubernetes API validation: %v\n%s\n--- manifests:\n%s", err, res, manifests)
			}
			objs := decodeAll(t, out)
			ss, ok := objs["StatefulSet/oncall-klaxon"]
			if !ok {
				t.Fatalf("no StatefulSet oncall-klaxon in %v", keys(objs))
			}
			want := max(c.wantReplicas, 1)
			if ss.Spec.Replicas == nil || *ss.Spec.Replicas != want {
				t.Errorf("replicas %v, want %d (bbolt allows one writer)", ss.Spec.Replicas, want)
			}
			if len(ss.Spec.VolumeClaimTemplates) != 1 || ss.Spec.VolumeClaimTemplates[0].Metadata.Name != "data" {
				t.Errorf("want one volumeClaimTemplate named data, got %+v", ss.Spec.VolumeClaimTemplates)
			}
			if _, ok := objs["Service/"+ss.Spec.ServiceName]; !ok {
				t.Errorf("governing service %q not rendered", ss.Spec.ServiceName)
			}
			pod := ss.Spec.Template.Spec
			if pod.SecurityContext["runAsNonRoot"] != true {
				t.Errorf("pod securityContext %v: want runAsNonRoot", pod.SecurityContext)
			}
			ctr := pod.Containers[0]
			if ctr.SecurityContext["readOnlyRootFilesystem"] != true || ctr.SecurityContext["allowPrivilegeEscalation"] != false {
				t.Errorf("container securityContext %v: want a read-only root and no privilege escalation", ctr.SecurityContext)
			}
			if !strings.HasSuffix(ctr.Image, ":0.1.0") {
				t.Errorf("image %q: want the chart's appVersion as tag", ctr.Image)
			}
			if len(ctr.Ports) != 1 || ctr.Ports[0].ContainerPort != 9797 {
				t.Errorf("ports %+v, want 9797", ctr.Ports)
			}
			env := map[string]string{}
			for _, e := range ctr.Env {
				env[e.Name] = e.Value
				if e.Name == "KLAXON_REPLICA_NAME" && e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
					t.Errorf("KLAXON_REPLICA_NAME from %+v, want the pod's name", e.ValueFrom)
				}
			}
			if _, named := env["KLAXON_REPLICA_NAME"]; named != (c.wantReplicas > 1) {
				t.Errorf("KLAXON_REPLICA_NAME set: %v, want it exactly with etcd replicas", named)
			}
			if _, etcd := env["KLAXON_STORE"]; etcd != (c.wantReplicas > 1) {
				t.Errorf("KLAXON_STORE set: %v, want it exactly with etcd replicas", etcd)
			}
			for k, v := range c.wantEnv {
				if env[k] != v {
					t.Errorf("env %s=%q, want %q", k, env[k], v)
				}
			}
			for k := range env {
				if !strings.HasSuffix(k, "_FILE") && strings.Contains(k, "TOKEN") {
					t.Errorf("env %s: a secret passed by value", k)
				}
			}
			mounts := map[string]string{}
			for _, m := range ctr.VolumeMounts {
				mounts[m.Name] = m.MountPath
				if m.SubPath != "" {
					t.Errorf("mount %s uses subPath: ConfigMap and Secret updates would never reach it", m.Name)
				}
			}
			if mounts["data"] != "/data" || mounts["rota"] != "/etc/klaxon/rota" || mounts["secrets"] != "/etc/klaxon/secrets" {
				t.Errorf("mounts %v", mounts)
			}
			if got := mounts["etcd-tls"]; (got == "/etc/klaxon/etcd-tls") != c.wantEtcdTLS {
				t.Errorf("etcd-tls mounted at %q, want it exactly with etcd over TLS", got)
			}
			for _, v := range pod.Volumes {
				switch {
				case v.Name == "secrets" && (v.Secret == nil || v.Secret.SecretName != c.wantSecret):
					t.Errorf("secrets volume %+v, want Secret %s", v.Secret, c.wantSecret)
				case v.Name == "rota" && (v.ConfigMap == nil || v.ConfigMap.Name != c.rotaCM):
					t.Errorf("rota volume %+v, want ConfigMap %s", v.ConfigMap, c.rotaCM)
				case v.Name == "etcd-tls" && (v.Secret == nil || v.Secret.SecretName != "klaxon-etcd-client"):
					t.Errorf("etcd-tls volume %+v, want Secret klaxon-etcd-client", v.Secret)
				}
			}
			cm, rendered := objs["ConfigMap/"+c.rotaCM]
			if c.rotaCM == "oncall-klaxon-rota" { // the chart's own
				if !rendered || cm.Data["rota.yaml"] != string(rota) {
					t.Errorf("the default rota ConfigMap does not hold the example rota.yaml")
				}
			} else if rendered {
				t.Errorf("rendered a ConfigMap %s though an existing one was named", c.rotaCM)
			}
		})
	}
}

// TestHelmChartRefusesBadValues: the values schema and required values stop a
// secret passed as plain env, a missing Secret name and a mistyped key.
func TestHelmChartRefusesBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--set", "env.KLAXON_API_TOKEN=hunter2"},
		{"--set", "env.KLAXON_ETCD_PASSWORD=hunter2"},
		{"--set", "existingSecret="},
		{"--set", "replicas=3"},                                          // on bbolt
		{"--set", "store=etcd"},                                          // without endpoints
		{"--set", "store=etcd", "--set", "etcd.endpoints={etcd-0:2379}"}, // not a URL
		{"--set", "store=etcd", "--set", "etcd.endpoints={https://a:2379}", "--set", "etcd.leaderTTL=5000ms"},
		{"--set", "store=sqlite"},
		{"--set", "persistance.size=1Gi"},
		{"--set", "service.port=99999"},
	} {
		out, err := helm(t, append([]string{"template", "oncall", chart}, args...)...)
		if err == nil {
			t.Errorf("helm template %v succeeded:\n%s", args, out)
		}
		if strings.Contains(out, "hunter2") {
			t.Errorf("helm's error repeats the secret: %s", out)
		}
	}
}

// TestHelmLintCatchesABrokenChart proves `helm lint --strict` above can fail:
// a copy of the chart with a template that fails to render, or a Chart.yaml
// without its version, fails it.
func TestHelmLintCatchesABrokenChart(t *testing.T) {
	for name, brk := range map[string]struct{ file, old, new string }{
		"template error": {"templates/service.yaml", "{{", "{{ .Values.nosuch.key }}{{"},
		"no version":     {"Chart.yaml", "\nversion:", "\nversionx:"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "klaxon")
			if err := os.CopyFS(dir, os.DirFS(path(chart))); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, brk.file)
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), brk.old) {
				t.Fatalf("%s no longer holds %q; update this test", brk.file, brk.old)
			}
			if err := os.WriteFile(f, []byte(strings.Replace(string(b), brk.old, brk.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := helm(t, "lint", "--strict", dir); err == nil {
				t.Fatalf("helm lint --strict passed a broken chart:\n%s", out)
			}
		})
	}
}

// TestKubecheckCatchesInvalidObjects proves the validation above can fail.
func TestKubecheckCatchesInvalidObjects(t *testing.T) {
	out, err := helm(t, "template", "oncall", chart)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	for name, broken := range map[string]string{
		"unknown field":        strings.Replace(out, "  serviceName:", "  servicename: x\n  serviceName:", 1),
		"wrong type":           strings.Replace(out, "replicas: 1", "replicas: one", 1),
		"bad name":             strings.Replace(out, "name: oncall-klaxon\n", "name: Oncall_Klaxon\n", 1),
		"mount without volume": strings.Replace(out, "- name: secrets\n          secret:", "- name: secretz\n          secret:", 1),
	} {
		if broken == out {
			t.Fatalf("%s: the replacement did not apply; update this test", name)
		}
		if res, err := kubecheck(t, broken); err == nil {
			t.Errorf("%s: kubecheck accepted it:\n%s", name, res)
		}
	}
}

// TestChartRotaIsTheExampleRota keeps the chart's bundled rota (helm cannot
// read files outside the chart) identical to the repository's rota.yaml.
func TestChartRotaIsTheExampleRota(t *testing.T) {
	a, err := os.ReadFile(path("rota.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path(chart + "/files/rota.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("deploy/helm/klaxon/files/rota.yaml differs from rota.yaml: cp rota.yaml deploy/helm/klaxon/files/rota.yaml")
	}
}

func dropKind(manifests, kind string) string {
	docs := strings.Split(manifests, "\n---")
	var keep []string
	for _, d := range docs {
		if !strings.Contains(d, "\nkind: "+kind+"\n") {
			keep = append(keep, d)
		}
	}
	return strings.Join(keep, "\n---")
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
