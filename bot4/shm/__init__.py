"""The shared-memory segment: layout, worker slots, and lock-free primitives."""
