// The third-party CRDs the tests validate against and install into the local
// cluster: prometheus-operator's PrometheusRule, PodMonitor and ServiceMonitor,
// and Gateway API's HTTPRoute. Nothing here is compiled: the modules carry the
// CRD YAML, and go.sum pins its checksums (scripts/fetch-crds copies it out).
module rampart.dev/tools/crds

go 1.25.0

require (
	github.com/prometheus-operator/prometheus-operator v0.93.0
	sigs.k8s.io/gateway-api v1.6.1
)
