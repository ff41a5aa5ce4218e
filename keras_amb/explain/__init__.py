"""Looking at and measuring attention maps."""
