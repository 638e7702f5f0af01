"""Rolling a compiled revision out to running sidecars: plan, waves, confirmation, gate, history."""
