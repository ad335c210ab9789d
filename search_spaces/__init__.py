"""Search spaces: plain data, one module per space, each exposing ``space(**overrides)``."""
