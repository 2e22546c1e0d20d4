"""Repository-level pytest configuration."""

# sk_slim.skorch needs the optional skorch; without it, skip its doctests (its
# tests skip themselves) instead of failing to import the module.
try:
    import skorch  # noqa: F401
except ImportError:
    collect_ignore = ["sk_slim/skorch.py"]
