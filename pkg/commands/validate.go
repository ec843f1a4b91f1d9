package commands

// validateAll runs an option set's checks in order and returns the first
// failure: every name and value is checked before any work.
func validateAll(checks ...func() error) error {
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}
