package options

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
)

// HistoryOptions are what a writing run records in the namespace's
// history and what it does with it: how many revisions are kept
// (--history-max), whether a failed wait rolls back
// (--rollback-on-failure), and who and what made the revision (the
// GitHub Actions run, the source commit).
type HistoryOptions struct {
	Max               int
	RollbackOnFailure bool

	// From the environment (Complete): the GitHub Actions run, when in one.
	Actions    bool
	Repository string // https://github.com/OWNER/REPO
	Commit     string // $GITHUB_SHA
	Workflow   string
	RunID      string
	RunAttempt string
	Actor      string
	RunURL     string
}

// HistoryFlags say which of the history flags a command has.
type HistoryFlags struct {
	RollbackOnFailure bool // release and deploy; not rollback itself
}

// DefaultHistoryMax is --history-max's default (Helm's).
const DefaultHistoryMax = 10

// AddFlags adds --history-max and, with with.RollbackOnFailure, --rollback-on-failure.
func (o *HistoryOptions) AddFlags(fs *pflag.FlagSet, with HistoryFlags) {
	fs.IntVar(&o.Max, "history-max", DefaultHistoryMax, "revisions kept in the namespace's history (the oldest go first, the deployed one never; 0: no limit)")
	if with.RollbackOnFailure {
		fs.BoolVar(&o.RollbackOnFailure, "rollback-on-failure", false,
			"when the wait fails, roll back to the revision deployed before, wait for it, and still exit with the failure's code")
	}
}

// Complete reads the GitHub Actions run a revision is recorded with.
func (o *HistoryOptions) Complete(getenv Getenv) {
	if getenv.get("GITHUB_ACTIONS") != "true" {
		return
	}
	o.Actions = true
	server := strings.TrimSuffix(getenv.get("GITHUB_SERVER_URL"), "/")
	if server == "" {
		server = "https://github.com"
	}
	repo := getenv.get("GITHUB_REPOSITORY")
	if repo != "" {
		o.Repository = server + "/" + repo
	}
	o.Commit = getenv.get("GITHUB_SHA")
	o.Workflow = getenv.get("GITHUB_WORKFLOW")
	o.RunID = getenv.get("GITHUB_RUN_ID")
	o.RunAttempt = getenv.get("GITHUB_RUN_ATTEMPT")
	o.Actor = getenv.get("GITHUB_ACTOR")
	if repo != "" && o.RunID != "" {
		o.RunURL = server + "/" + repo + "/actions/runs/" + o.RunID
	}
}

// Validate refuses a negative --history-max.
func (o *HistoryOptions) Validate() error {
	if o.Max < 0 {
		return fail.New(fail.Usage, "pass --history-max 1 or more (0 keeps every revision)", "--history-max %d is negative", o.Max)
	}
	return nil
}
