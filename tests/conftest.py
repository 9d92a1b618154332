"""Hypothesis profiles: ``default`` (quick local runs), ``ci`` (derandomized, reproducible) and
``mutate`` (``ci`` with 30 examples and without shrinking: mutation testing asks only whether a
test fails, a surviving mutant runs every example of every test that reaches it, and shrinking a
failing example can take a minute); and the models several test files share, as
session fixtures.

Pick a profile with the ``HYPOTHESIS_PROFILE`` environment variable; ``default`` when unset.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

import decoding

from checkpoints import train_bpe

settings.register_profile(
    "default",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "mutate",
    settings.get_profile("ci"),
    max_examples=30,
    phases=[p for p in Phase if p is not Phase.shrink],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# -- models several test files share, built once per session ------------------------------------


@pytest.fixture(scope="session")
def gpt2() -> decoding.NumpyTransformerLM:
    """The default model (its math may run in float32 for speed)."""
    return decoding.NumpyTransformerLM()


@pytest.fixture(scope="session")
def gpt2_float64() -> decoding.NumpyTransformerLM:
    """The default weights with float64 math, for near-exact comparisons."""
    return decoding.NumpyTransformerLM(dtype=np.float64)


@pytest.fixture(scope="session")
def gpt2_small() -> decoding.NumpyTransformerLM:
    """A small float64 model so long cache runs stay fast."""
    return decoding.NumpyTransformerLM(
        vocab_size=37, d_model=16, n_heads=4, n_layers=2, seed=3, dtype=np.float64
    )


@pytest.fixture(scope="session")
def trained():
    """A byte-level BPE tokenizer (``tokenizers.Tokenizer``) trained on `checkpoints.CORPUS`."""
    return train_bpe()


@pytest.fixture
def limit():
    """Set the memory limit inside a test; the previous one is restored after it."""
    previous = decoding.memory_limit()
    yield decoding.set_memory_limit
    decoding.set_memory_limit(previous)
