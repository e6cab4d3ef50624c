"""Stages 2–3: alt-text extraction, query matching and class balancing."""
