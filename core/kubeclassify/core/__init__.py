"""What every KubeClassify component shares: the custom-resource contract, settings, logging,
storage, SSRF-safe fetching, webhook signing and launchers for local services."""
