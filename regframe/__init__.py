"""regframe: container registries as pandas DataFrames."""
