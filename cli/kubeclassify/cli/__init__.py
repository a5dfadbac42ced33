"""The command-line client: its commands, the local stack's launchers, the demo and its sample data.

No other component imports it; it speaks to the platform through the gateway's HTTP API, the
Kubernetes API and object storage, as a user does.
"""
