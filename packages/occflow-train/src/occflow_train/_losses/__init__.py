"""Self-supervised losses of Let Occ Flow."""
