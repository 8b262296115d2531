"""Warp kernels (private): one module per pass so editing one recompiles only that module."""
