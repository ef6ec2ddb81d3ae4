// Command kubecheck validates Kubernetes manifests (such as `helm template`
// output) against the Kubernetes API types: every document must decode
// strictly (no unknown or duplicate fields, right value types) into the Go type
// of its apiVersion and kind, and a few rules the API server enforces are
// checked (names, labels, selectors matching their pod template, mounts naming
// volumes, ports in range, environment variable names).
//
//	helm template deploy/helm/klaxon | kubecheck -
//
// It prints one line per object and exits 1 with every problem found.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kubecheck FILE|-")
		os.Exit(2)
	}
	var in io.Reader = os.Stdin
	if os.Args[1] != "-" {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubecheck:", err)
			os.Exit(2)
		}
		defer f.Close()
		in = f
	}
	problems, err := check(in, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubecheck:", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}

func check(in io.Reader, out io.Writer) ([]string, error) {
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufio.NewReader(in))
	var problems []string
	n := 0
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		n++
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			problems = append(problems, fmt.Sprintf("document %d: %v", n, err))
			continue
		}
		name := fmt.Sprintf("%s %s", gvk.Kind, metaName(obj))
		fmt.Fprintf(out, "ok: %s/%s\n", gvk.GroupVersion(), strings.TrimPrefix(name, gvk.Kind+" "))
		for _, p := range validate(obj) {
			problems = append(problems, name+": "+p)
		}
	}
	if n == 0 {
		return nil, errors.New("no Kubernetes objects in the input")
	}
	return problems, nil
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range strings.Split(string(doc), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") && t != "---" {
			b.WriteString(l + "\n")
		}
	}
	return b.Bytes()
}

func metaName(obj runtime.Object) string {
	if m, ok := obj.(metav1.Object); ok {
		return m.GetName()
	}
	return "?"
}

// validate checks rules the API server would enforce on create.
func validate(obj runtime.Object) []string {
	var ps []string
	add := func(format string, a ...any) { ps = append(ps, fmt.Sprintf(format, a...)) }
	m, ok := obj.(metav1.Object)
	if !ok {
		return []string{"not an object with metadata"}
	}
	for _, e := range validation.IsDNS1123Subdomain(m.GetName()) {
		add("metadata.name %q: %s", m.GetName(), e)
	}
	for k, v := range m.GetLabels() {
		for _, e := range validation.IsQualifiedName(k) {
			add("label key %q: %s", k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			add("label %s value %q: %s", k, v, e)
		}
	}
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		if o.Spec.Selector == nil {
			add("spec.selector is required")
		} else if sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector); err != nil {
			add("spec.selector: %v", err)
		} else if !sel.Matches(labels.Set(o.Spec.Template.Labels)) {
			add("spec.selector does not match the pod template's labels")
		}
		if o.Spec.ServiceName == "" {
			add("spec.serviceName is required")
		}
		claims := map[string]bool{}
		for _, c := range o.Spec.VolumeClaimTemplates {
			claims[c.Name] = true
			if _, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				add("volumeClaimTemplates %s: no storage request", c.Name)
			}
			if len(c.Spec.AccessModes) == 0 {
				add("volumeClaimTemplates %s: no access mode", c.Name)
			}
		}
		ps = append(ps, validatePod(o.Spec.Template.Spec, claims)...)
	case *appsv1.Deployment:
		ps = append(ps, validatePod(o.Spec.Template.Spec, nil)...)
	case *corev1.Service:
		for _, p := range o.Spec.Ports {
			if p.Port < 1 || p.Port > 65535 {
				add("port %s: %d out of range", p.Name, p.Port)
			}
			if p.TargetPort.Type == 1 { // a named port
				for _, e := range validation.IsValidPortName(p.TargetPort.StrVal) {
					add("targetPort %q: %s", p.TargetPort.StrVal, e)
				}
			}
		}
		if len(o.Spec.Selector) == 0 {
			add("spec.selector is empty: the Service selects nothing")
		}
	case *corev1.ConfigMap:
		for k := range o.Data {
			for _, e := range validation.IsConfigMapKey(k) {
				add("data key %q: %s", k, e)
			}
		}
	}
	return ps
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

func validatePod(spec corev1.PodSpec, claims map[string]bool) []string {
	var ps []string
	add := func(format string, a ...any) { ps = append(ps, fmt.Sprintf(format, a...)) }
	vols := map[string]bool{}
	for name := range claims {
		vols[name] = true
	}
	for _, v := range spec.Volumes {
		for _, e := range validation.IsDNS1123Label(v.Name) {
			add("volume %q: %s", v.Name, e)
		}
		if vols[v.Name] {
			add("volume %q declared twice", v.Name)
		}
		vols[v.Name] = true
	}
	if len(spec.Containers) == 0 {
		add("no containers")
	}
	for _, c := range spec.Containers {
		for _, e := range validation.IsDNS1123Label(c.Name) {
			add("container %q: %s", c.Name, e)
		}
		if c.Image == "" {
			add("container %s: no image", c.Name)
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				add("container %s: port %d out of range", c.Name, p.ContainerPort)
			}
			ports[p.Name] = true
		}
		for _, e := range c.Env {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				add("container %s: env %q: %s", c.Name, e.Name, msg)
			}
		}
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				add("container %s: mount %q names no volume", c.Name, m.Name)
			}
		}
		for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.Type == 1 && !ports[p.HTTPGet.Port.StrVal] {
				add("container %s: %s probe port %q is not a named container port", c.Name, what, p.HTTPGet.Port.StrVal)
			}
		}
	}
	return ps
}
