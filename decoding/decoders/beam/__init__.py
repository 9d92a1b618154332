"""Beam search: the search (`search`), the pool rule (`select`)."""
