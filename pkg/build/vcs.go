package build

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Revision is what version control says about a build context.
type Revision struct {
	Source   string    // repository URL (https form when it can be), "" when unknown
	Revision string    // commit id
	Ref      string    // branch or tag asked for (git URL contexts)
	Time     time.Time // commit time; zero when unknown
}

// VCS tells which commit a build context is at: a local directory, or a
// git URL (https://…/repo.git#ref). Describe returns a zero Revision when
// the context is not under version control.
type VCS interface {
	Describe(ctx context.Context, context string) (Revision, error)
}

// Git is the VCS for git checkouts, through the git command. A machine
// without git, or a directory outside a work tree, has no revision.
type Git struct{}

// Describe implements VCS.
func (Git) Describe(ctx context.Context, dir string) (Revision, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return Revision{}, nil
	}
	if IsGitURL(dir) {
		return describeRemote(ctx, dir), nil
	}
	out, err := git(ctx, dir, "log", "-1", "--format=%H %ct")
	if err != nil {
		return Revision{}, nil // not a checkout, or no commit yet
	}
	id, ts, ok := strings.Cut(out, " ")
	secs, perr := strconv.ParseInt(ts, 10, 64)
	if !ok || perr != nil {
		return Revision{}, nil
	}
	rev := Revision{Revision: id, Time: time.Unix(secs, 0).UTC()}
	if url, err := git(ctx, dir, "config", "--get", "remote.origin.url"); err == nil {
		rev.Source = httpsURL(url)
	}
	return rev, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	// Reading metadata is safe in a checkout owned by another user.
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "safe.directory=*", "-C", dir}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", err
	}
	return strings.TrimSpace(out.String()), nil
}

// httpsURL turns git@host:org/repo.git into https://host/org/repo and drops
// credentials and the .git suffix from https URLs, for the source label.
func httpsURL(u string) string {
	if rest, ok := strings.CutPrefix(u, "git@"); ok {
		host, path, _ := strings.Cut(rest, ":")
		u = "https://" + host + "/" + path
	}
	if scheme, rest, ok := strings.Cut(u, "://"); ok {
		if at := strings.Index(rest, "@"); at >= 0 && at < strings.Index(rest+"/", "/") {
			rest = rest[at+1:]
		}
		u = scheme + "://" + rest
	}
	return strings.TrimSuffix(u, ".git")
}

// describeRemote resolves a git URL context's ref (default HEAD) to its
// commit with git ls-remote; BuildKit fetches the same ref for the build.
func describeRemote(ctx context.Context, context string) Revision {
	url, frag, _ := strings.Cut(context, "#")
	ref, _, _ := strings.Cut(frag, ":")
	rev := Revision{Source: httpsURL(url), Ref: ref}
	if ref == "" {
		ref = "HEAD"
	}
	out, err := git(ctx, ".", "ls-remote", "--", url, ref, "refs/tags/"+ref+"^{}")
	if err != nil {
		return rev
	}
	// A peeled tag (refs/tags/X^{}) names the commit; otherwise the first line.
	lines := strings.Split(out, "\n")
	for _, l := range lines {
		if id, name, ok := strings.Cut(l, "\t"); ok && strings.HasSuffix(name, "^{}") {
			rev.Revision = id
			return rev
		}
	}
	if id, _, ok := strings.Cut(lines[0], "\t"); ok && len(id) == 40 {
		rev.Revision = id
	}
	return rev
}
