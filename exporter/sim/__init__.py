"""A faithful mempool.space simulator for demos and tests: `python -m exporter.sim`."""
