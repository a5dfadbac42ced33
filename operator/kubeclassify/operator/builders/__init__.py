"""Pure functions from our resources to the Kubernetes objects that run them: no API calls."""
