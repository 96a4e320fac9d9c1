"""Trainers: the torch loop (and, later, the scikit-learn fit path)."""
