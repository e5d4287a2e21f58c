"""Shared package of the customer upgrade system (deployed as the Shared Lambda layer)."""
