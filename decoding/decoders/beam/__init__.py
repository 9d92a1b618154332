"""Beam search: the search and its state (`search`), the pool rule (`select`), the
finished-beam policies (`policies`)."""
