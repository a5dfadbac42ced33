"""Test harness: the Kubernetes API emulator and schema validation helpers."""
