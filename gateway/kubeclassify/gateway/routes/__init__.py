"""The gateway's API, one router per topic."""
