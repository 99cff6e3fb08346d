"""Adapters to real venues (optional extras)."""
