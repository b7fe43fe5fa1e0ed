"""Signed tokens and the server's secret key: what every service that authenticates a caller shares."""
