"""Tests call the real handlers through the same loader the local stack uses."""

from upgradectl.local.functions import FakeContext, invoke, load_function

__all__ = ["FakeContext", "invoke", "load_function"]
