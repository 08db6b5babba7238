"""Model worker processes: each loads one runtime and serves it to the gateway."""
