"""Attack corpora: one module per defect class, each case failing on the code before its fix."""
