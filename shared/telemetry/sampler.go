package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// LinkKey marks a span link that points at a batch's trace (the submit
// span); its value says which kind ("batch"). The sampler decides by it.
const LinkKey = attribute.Key("nodebatch.link")

// LinkBatch is the LinkKey value of a link to the batch's submit span.
const LinkBatch = "batch"

// BatchSampler samples a batch as a whole. A span with a link marked
// LinkKey=LinkBatch (a node's patch span, a retry, a revert) follows the
// sampling decision of the batch's submit span, carried in the link's
// trace flags: every node of a sampled batch is recorded, and none of an
// unsampled one, whatever the parent (Cloud Run's request span) decided.
// Any other span is parent-based: a child follows its parent, and a root
// (the submit of a request that carries no trace context) is decided by
// root.
func BatchSampler(root sdktrace.Sampler) sdktrace.Sampler {
	return batchSampler{parent: sdktrace.ParentBased(root)}
}

type batchSampler struct{ parent sdktrace.Sampler }

func (s batchSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	for _, l := range p.Links {
		if !isBatchLink(l) || !l.SpanContext.IsValid() {
			continue
		}
		d := sdktrace.Drop
		if l.SpanContext.IsSampled() {
			d = sdktrace.RecordAndSample
		}
		return sdktrace.SamplingResult{Decision: d, Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
	}
	return s.parent.ShouldSample(p)
}

func (s batchSampler) Description() string {
	return "BatchSampler{" + s.parent.Description() + "}"
}

func isBatchLink(l trace.Link) bool {
	for _, a := range l.Attributes {
		if a.Key == LinkKey && a.Value.AsString() == LinkBatch {
			return true
		}
	}
	return false
}
