"""edgectl: the operator's tool (controller side)."""
