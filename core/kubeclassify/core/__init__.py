"""The contract every KubeClassify component shares: the custom-resource models and CRDs, the names
that cross processes, settings, logging, storage, SSRF-safe fetching and webhook signing."""
