"""Trainers: the torch loop, the scikit-learn fit path, and the dispatch between them."""
