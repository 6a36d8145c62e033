"""Reports rendered from declared facts (pure: no I/O). ``responsibilities``: the HDS
responsibility notice a health-data host publishes in its legal notice."""
