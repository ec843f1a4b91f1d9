package sign

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/idopipe/idopipe/pkg/build"
	"github.com/idopipe/idopipe/pkg/registry"
)

// Provenance is what a SLSA provenance statement says of a build.
type Provenance struct {
	PredicateType string `json:"predicateType"`
	Subject       string `json:"subject"`  // the image manifest digest it is about
	Source        string `json:"source"`   // repository (vcs source, else the config source URI, else the source label)
	Revision      string `json:"revision"` // commit
	Builder       string `json:"builder"`  // builder id; BuildKit's when the build names none
	Signed        bool   `json:"signed"`   // checked against a key
}

// String is the one-line form: source@revision by builder.
func (p Provenance) String() string {
	s := orNone(p.Source)
	if p.Revision != "" {
		s += "@" + p.Revision
	}
	signed := "unsigned"
	if p.Signed {
		signed = "signed"
	}
	return fmt.Sprintf("%s provenance: source %s, builder %s", signed, s, orNone(p.Builder))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// BuildKit's names in an attestation manifest.
const (
	annotationPredicateType = "in-toto.io/predicate-type"
	buildkitMetadata        = "https://mobyproject.org/buildkit@v1#metadata"
)

// isAttestation tells BuildKit's attestation manifests in an index.
var isAttestation = build.IsAttestation

// provenanceStatements reads the SLSA provenance statements (in-toto JSON)
// of the attestation manifest d of idx.
func provenanceStatements(idx v1.ImageIndex, d v1.Descriptor) ([][]byte, error) {
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, l := range m.Layers {
		if !strings.HasPrefix(l.Annotations[annotationPredicateType], "https://slsa.dev/provenance/") {
			continue
		}
		b, err := readPayload(img, l.Digest)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// ReadProvenance reads the provenance BuildKit attached to the index ref
// names, without checking any signature (Signed is false).
func ReadProvenance(ctx context.Context, ref name.Digest, access registry.Access) ([]Provenance, error) {
	base, err := access.Options(ctx)
	if err != nil {
		return nil, err
	}
	f, err := access.Fetch(ref, contextOpts(ctx, base), "read")
	if err != nil {
		return nil, err
	}
	var out []Provenance
	for _, d := range f.Manifests {
		if !isAttestation(d) {
			continue
		}
		sts, err := provenanceStatements(f.Index, d)
		if err != nil {
			return nil, access.Explain(err, "read the provenance of", ref)
		}
		for _, st := range sts {
			p, err := parseProvenance(st)
			if err == nil {
				p.Signed = false
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// statement is the part of an in-toto statement with SLSA provenance
// v0.2 or v1 (as BuildKit writes them) that says where a build came from.
type statement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate struct {
		// v0.2
		Builder struct {
			ID string `json:"id"`
		} `json:"builder"`
		Invocation struct {
			ConfigSource configSource `json:"configSource"`
			Parameters   struct {
				Args map[string]string `json:"args"`
			} `json:"parameters"`
		} `json:"invocation"`
		Metadata map[string]json.RawMessage `json:"metadata"`
		// v1
		BuildDefinition struct {
			ExternalParameters struct {
				ConfigSource configSource `json:"configSource"`
				Request      struct {
					Args map[string]string `json:"args"`
				} `json:"request"`
			} `json:"externalParameters"`
		} `json:"buildDefinition"`
		RunDetails struct {
			Builder struct {
				ID string `json:"id"`
			} `json:"builder"`
			Metadata map[string]json.RawMessage `json:"metadata"`
		} `json:"runDetails"`
	} `json:"predicate"`
}

type configSource struct {
	URI    string            `json:"uri"`
	Digest map[string]string `json:"digest"`
}

type buildkitMeta struct {
	VCS struct {
		Source   string `json:"source"`
		Revision string `json:"revision"`
	} `json:"vcs"`
}

// parseProvenance reads a SLSA provenance statement; it is signed (the
// caller checked it).
func parseProvenance(b []byte) (Provenance, error) {
	var st statement
	if err := json.Unmarshal(b, &st); err != nil {
		return Provenance{}, err
	}
	if !strings.HasPrefix(st.PredicateType, "https://slsa.dev/provenance/") {
		return Provenance{}, fmt.Errorf("predicate type %q is not SLSA provenance", st.PredicateType)
	}
	p := Provenance{PredicateType: st.PredicateType, Signed: true}
	if len(st.Subject) > 0 {
		if h := st.Subject[0].Digest["sha256"]; h != "" {
			p.Subject = "sha256:" + h
		}
	}
	pr := st.Predicate
	cs, args, meta := pr.Invocation.ConfigSource, pr.Invocation.Parameters.Args, pr.Metadata
	p.Builder = pr.Builder.ID
	if strings.HasSuffix(st.PredicateType, "/v1") {
		cs, args, meta = pr.BuildDefinition.ExternalParameters.ConfigSource, pr.BuildDefinition.ExternalParameters.Request.Args, pr.RunDetails.Metadata
		p.Builder = pr.RunDetails.Builder.ID
	}
	var bk buildkitMeta
	for _, key := range []string{buildkitMetadata, "buildkit_metadata"} { // v0.2, v1
		if raw, ok := meta[key]; ok {
			_ = json.Unmarshal(raw, &bk)
		}
	}
	switch {
	case bk.VCS.Source != "":
		p.Source, p.Revision = bk.VCS.Source, bk.VCS.Revision
	case cs.URI != "":
		p.Source, p.Revision = cs.URI, cs.Digest["sha1"]
	default:
		// A local context: the OCI labels idopipe fills from git are
		// among the build's parameters.
		p.Source = args["label:org.opencontainers.image.source"]
		p.Revision = args["label:org.opencontainers.image.revision"]
	}
	if p.Revision == "" {
		p.Revision = args["label:org.opencontainers.image.revision"]
	}
	if p.Builder == "" {
		p.Builder = "BuildKit"
	}
	return p, nil
}

// normalizeRepo folds the spellings of one repository together:
// https://github.com/o/n, github.com/o/n.git, git@github.com:o/n, a #ref.
func normalizeRepo(s string) string {
	s = strings.TrimSpace(strings.ToLower(s))
	s, _, _ = strings.Cut(s, "#")
	for _, p := range []string{"https://", "http://", "ssh://", "git://", "git@"} {
		s = strings.TrimPrefix(s, p)
	}
	s = strings.Replace(s, ":", "/", 1)
	s = strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git")
	return s
}
