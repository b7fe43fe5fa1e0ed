"""Shared test configuration. Real-infrastructure tests live in tests/integration and are marked."""
