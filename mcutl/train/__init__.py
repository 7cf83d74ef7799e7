"""The training step: forward, loss, backward, optimizer; its arena plan."""
