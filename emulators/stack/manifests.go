package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	k8s "github.com/nodebatch/nodebatch/infra/k8s"
)

// resources maps the kinds infra/k8s uses to their (cluster-scoped)
// resources, so applying needs no discovery.
var resources = map[schema.GroupVersionKind]schema.GroupVersionResource{
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}:                         {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"}:                  {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingAdmissionPolicy"}:        {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingAdmissionPolicyBinding"}: {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"},
}

// applyManifests server-side applies infra/k8s's Local files as the admin,
// with the impersonator binding naming identity.
func applyManifests(ctx context.Context, admin *rest.Config, identity string) error {
	dyn, err := dynamic.NewForConfig(admin)
	if err != nil {
		return fmt.Errorf("apply infra/k8s: %w", err)
	}
	for _, name := range k8s.Local {
		b, err := k8s.Files.ReadFile(name)
		if err != nil {
			return fmt.Errorf("apply infra/k8s: %w", err)
		}
		b = bytes.ReplaceAll(b, []byte(k8s.Identity), []byte(identity))
		objs, err := decodeManifests(b)
		if err != nil {
			return fmt.Errorf("apply infra/k8s/%s: %w", name, err)
		}
		for _, o := range objs {
			gvr, ok := resources[o.GroupVersionKind()]
			if !ok {
				return fmt.Errorf("apply infra/k8s/%s: kind %s is not known to the stack", name, o.GroupVersionKind())
			}
			if _, err := dyn.Resource(gvr).Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "nodebatch-stack", Force: true}); err != nil {
				return fmt.Errorf("apply infra/k8s/%s: %s %s: %w", name, o.GetKind(), o.GetName(), err)
			}
		}
	}
	return nil
}

// decodeManifests splits a multi-document YAML file into objects.
func decodeManifests(b []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		o := &unstructured.Unstructured{Object: m}
		if strings.Contains(o.GetName(), "${") {
			return nil, fmt.Errorf("%s %s: unreplaced placeholder", o.GetKind(), o.GetName())
		}
		out = append(out, o)
	}
}
