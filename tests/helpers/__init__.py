"""Helpers shared by the adversarial test modules (tamper, crash, concurrency, ...)."""
