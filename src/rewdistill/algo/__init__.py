"""The math layer: pure tensor / list functions. Imports torch only."""
