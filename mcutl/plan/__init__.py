"""Memory planning: every tensor of a step gets a lifetime and an offset in one static arena."""
