package build

import (
	"time"
)

// The OCI annotation keys idopipe fills in as image labels.
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelVersion  = "org.opencontainers.image.version"
	LabelCreated  = "org.opencontainers.image.created"
)

// imageLabels merges the OCI labels known from version control, the
// version and the epoch under the user's own (which win).
func imageLabels(s Spec, rev Revision, epoch string) map[string]string {
	out := map[string]string{}
	if rev.Source != "" {
		out[LabelSource] = rev.Source
	}
	if rev.Revision != "" {
		out[LabelRevision] = rev.Revision
	} else if rev.Ref != "" {
		out[LabelRevision] = rev.Ref
	}
	if s.Version != "" {
		out[LabelVersion] = s.Version
	}
	// Only a fixed time: a wall-clock one would make every build's digest
	// differ.
	if t, ok := epochTime(epoch); ok {
		out[LabelCreated] = t.Format(time.RFC3339)
	} else if !rev.Time.IsZero() {
		out[LabelCreated] = rev.Time.Format(time.RFC3339)
	}
	for k, v := range s.Labels {
		out[k] = v
	}
	return out
}

func labelAttrs(labels map[string]string, frontend map[string]string) {
	for k, v := range labels {
		frontend["label:"+k] = v
	}
}
