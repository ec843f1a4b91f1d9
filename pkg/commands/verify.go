package commands

import (
	"context"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/idopipe/idopipe/pkg/cluster"
	"github.com/idopipe/idopipe/pkg/commands/options"
	"github.com/idopipe/idopipe/pkg/creds"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/pipeline"
	"github.com/idopipe/idopipe/pkg/registry"
	"github.com/idopipe/idopipe/pkg/sign"
	"github.com/idopipe/idopipe/pkg/verify"
)

// verifyOptions are verify-pull's flags: the registry group (no target:
// REF names it), kubectl's for --as-cluster and --platforms-from-cluster.
type verifyOptions struct {
	g                    *options.GlobalOptions
	reg                  options.RegistryOptions
	kube                 *options.KubeOptions
	digest               string
	full                 bool
	platforms            []string
	platformsFromCluster bool
	asCluster            bool
	secret               options.PullSecretOptions
	policy               options.PolicyOptions
	sigstore             options.SigstoreOptions
	sourceRepo           string
}

// verifyResult is verify-pull's result object: the pull report, and with
// a signature policy the signature and the signed provenance.
type verifyResult struct {
	verify.Report
	Signature  *sign.Verified    `json:"signature,omitempty"`
	Provenance []sign.Provenance `json:"provenance,omitempty"`
}

func newVerifyCommand(env Env, g *options.GlobalOptions) *cobra.Command {
	o := &verifyOptions{g: g, kube: options.NewKubeOptions()}
	o.policy = options.NewPolicyOptions(&o.sigstore)
	kube := o.kube.Flags
	cmd := &cobra.Command{
		Use:   "verify-pull REF",
		Short: "Check that an image can be pulled (and has the expected digest)",
		Long: `verify-pull resolves REF in its registry with the same credentials a release
uses, reads its manifest(s) and config(s), and exits 0 only when the image is
pullable and, with --digest, resolves to that digest. REF may carry @sha256:….

With --as-cluster it pulls with the credentials of the cluster's pull Secret
(--secret-name in -n), so a broken Secret is found before any Pod exists;
with --platforms-from-cluster every node's os/arch must have an image.
With --verify-key it also checks that the digest it resolved is signed by one of
the public keys (cosign's format: the sha256-<hex>.sig tag, a cosign OCI 1.1
referrer, or a Sigstore bundle). With --certificate-identity[-regexp] (and
--certificate-oidc-issuer), or gh's --signer-owner/--signer-repo/
--signer-workflow, it checks keyless signatures: Sigstore bundles stored as
OCI 1.1 referrers of the digest (idopipe's, cosign v3's, actions/attest's),
whose Fulcio certificate chains to --trusted-root (default the public-good
instance's), names that identity and was valid at a proven time (a timestamp
authority's or the log's). It shows who signed: the certificate's identity,
issuer, repository, ref and commit, and the time. It shows the signed SLSA
provenance (source, revision, builder); --source-repo requires that
provenance to name that repository. Without a policy, provenance BuildKit
attached is shown as unsigned.
Exit codes: 0 pullable, 3 unauthorized, 7 digest mismatch, 10 not found,
11 platform missing, 12 corrupt blob (--full), 15 unsigned or signed by
someone else.`,
		Example: `  idopipe verify-pull ghcr.io/my-org/planner:0.4.0 --digest sha256:…
  idopipe verify-pull ghcr.io/my-org/planner:0.4.0 --full --as-cluster -n ido --platforms-from-cluster
  idopipe verify-pull ghcr.io/my-org/planner:0.4.0 --verify-key cosign.pub --source-repo https://github.com/my-org/intent-driven-orchestration
  idopipe verify-pull ghcr.io/my-org/planner:0.4.0 --signer-repo my-org/ido --signer-workflow my-org/ido/.github/workflows/release.yml`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, args []string) error {
			r := plainReporter(env, g)
			o.reg.Complete(env.Getenv)
			ref, policy, err := o.Validate(args[0])
			if err != nil {
				return finish(env, g, r, "", nil, err)
			}
			var res verifyResult
			err = pipeline.RunStage(c.Context(), "verify-pull", func(ctx context.Context) (string, error) {
				var cr *creds.Credentials
				var opts []verify.Option
				if o.full {
					opts = append(opts, verify.WithFull())
				}
				opts = append(opts, verify.WithPlatforms(o.platforms...))
				if o.asCluster || o.platformsFromCluster {
					kc, err := cluster.New(ctx, kube)
					if err != nil {
						return "", err
					}
					if o.asCluster {
						c, err := kc.PullCredentials(ctx, *kube.Namespace, o.secret.SecretName, ref.Context().RegistryStr())
						if err != nil {
							return "", err
						}
						cr = &c
					}
					if o.platformsFromCluster {
						ps, err := kc.NodePlatforms(ctx)
						if err != nil {
							return "", err
						}
						opts = append(opts, verify.WithPlatforms(ps...))
					}
				}
				if cr == nil {
					var err error
					if cr, err = o.reg.OptionalCredentials(ref.Context().RegistryStr(), warner(r)); err != nil {
						return "", err
					}
				}
				want := o.digest
				if d, ok := ref.(name.Digest); ok {
					if want != "" && want != d.DigestStr() {
						return "", fail.New(fail.Usage, "give the digest once", "--digest %s differs from the digest in %s", want, args[0])
					}
					want = d.DigestStr()
				}
				rep, err := verify.Pull(ctx, ref, want, o.reg.Access(cr), opts...)
				res.Report = rep
				if err != nil {
					return "", err
				}
				return verifySignature(ctx, &res, ref.Context().Digest(rep.Digest), policy, o.sourceRepo, o.reg.Access(cr))
			}, r)
			return finish(env, g, r, "", res, err)
		},
	}
	fs := cmd.Flags()
	o.reg.AddFlags(fs, options.RegistryFlags{Jobs: true})
	fs.StringVar(&o.digest, "digest", "", "expected digest (sha256:…)")
	fs.BoolVar(&o.full, "full", false, "download every layer and check its size and sha256")
	fs.StringArrayVar(&o.platforms, "platform", nil, "require an image for this os/arch (repeatable)")
	fs.BoolVar(&o.platformsFromCluster, "platforms-from-cluster", false, "require an image for every node's os/arch")
	fs.BoolVar(&o.asCluster, "as-cluster", false, "pull with the credentials of the cluster's pull Secret")
	o.secret.AddFlags(fs)
	o.policy.AddFlags(fs)
	o.sigstore.AddFlags(fs, options.SigstoreFlags{})
	fs.StringVar(&o.sourceRepo, "source-repo", "", "with a signature policy: require signed provenance whose source is this repository, e.g. https://github.com/OWNER/NAME")
	o.kube.AddFlags(fs)
	return cmd
}

// Validate parses REF and loads the signature policy.
func (o *verifyOptions) Validate(arg string) (name.Reference, sign.Policy, error) {
	ref, err := name.ParseReference(arg, name.StrictValidation)
	if err != nil {
		return nil, sign.Policy{}, fail.New(fail.Usage, "give REGISTRY/REPOSITORY:TAG or …@sha256:…, in lowercase", "invalid image reference %q: %v", arg, err)
	}
	if o.sourceRepo != "" && !o.policy.Enabled() {
		return nil, sign.Policy{}, fail.New(fail.Usage, "pass --verify-key PUB or --certificate-identity ID: only a signed provenance says where an image came from", "--source-repo needs a signature policy")
	}
	if o.digest != "" {
		if _, err := name.NewDigest(ref.Context().String()+"@"+o.digest, name.StrictValidation); err != nil {
			return nil, sign.Policy{}, fail.New(fail.Usage, "give --digest as sha256: and 64 hex digits", "invalid --digest %q", o.digest)
		}
	}
	if err := validateAll(o.reg.Validate, o.kube.Validate, o.secret.Validate, o.sigstore.Validate, o.policy.Validate); err != nil {
		return nil, sign.Policy{}, err
	}
	return ref, o.policy.Policy, nil
}

// verifySignature completes res for the digest d: with a policy, the signature
// (and signed provenance, with sourceRepo its source) must check out;
// without, BuildKit's provenance is shown as it is, unsigned.
func verifySignature(ctx context.Context, res *verifyResult, d name.Digest, policy sign.Policy, sourceRepo string, access registry.Access) (string, error) {
	summary := res.Report.String()
	if policy.Empty() {
		// Shown when it can be read; without a key it proves nothing, so
		// a provenance that cannot be read does not fail the pull check.
		provs, err := sign.ReadProvenance(ctx, d, access)
		if err != nil && ctx.Err() != nil {
			return "", ctx.Err()
		}
		res.Provenance = provs
		return summary + provenanceSummary(provs), nil
	}
	opts := []sign.Option{sign.WithProvenance()}
	if sourceRepo != "" {
		opts = append(opts, sign.WithSourceRepo(sourceRepo))
	}
	v, err := sign.Verify(ctx, d, policy, access, opts...)
	if err != nil {
		return "", err
	}
	res.Signature, res.Provenance = &v, v.Provenance
	return summary + ", signed by " + signerSummary(v) + provenanceSummary(v.Provenance), nil
}

// provenanceSummary is "; signed provenance: source …@…, builder …" for
// each distinct provenance (the platforms of one build share one).
func provenanceSummary(provs []sign.Provenance) string {
	seen := map[string]bool{}
	var out string
	for _, p := range provs {
		if s := p.String(); !seen[s] {
			seen[s] = true
			out += "; " + s
		}
	}
	return out
}

// signerSummary is who signed, as verify-pull shows it: the key, or the
// certificate's identity, issuer, repository, ref and commit, and the
// time that proves the short-lived certificate was valid.
func signerSummary(v sign.Verified) string {
	c := v.Certificate
	if c == nil {
		return v.Key
	}
	s := c.Subject + " (issuer " + c.Issuer
	for _, f := range []struct{ k, v string }{{"repository", c.Repository}, {"ref", c.Ref}, {"commit", c.Commit}} {
		if f.v != "" {
			s += ", " + f.k + " " + f.v
		}
	}
	s += ")"
	if v.Timestamp != nil {
		s += ", at " + v.Timestamp.UTC().Format(time.RFC3339) + " (" + v.TimestampBy + ")"
	}
	return s
}
