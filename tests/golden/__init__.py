"""Hand-built traces with answers known exactly (see each builder's docstring); built in code, never downloaded."""
