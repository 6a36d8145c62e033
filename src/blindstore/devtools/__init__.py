"""Development helpers that start real services locally (``blindstore dev``, the test suite)."""
