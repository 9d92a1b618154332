"""Decoding strategies and the driver they share (`Decoder`: init, step until done, finalize)."""
