package workload

// PrimaryTemplate and PrimarySelector expose the primary's rewrites to the
// tests of package workload_test.
var (
	PrimaryTemplate = primaryTemplate
	PrimarySelector = primarySelector
)
