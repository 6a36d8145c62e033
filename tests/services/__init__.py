"""Session fixtures that run the real stand-in services (one process per test session)."""
