"""arastory: config-driven experiments for Arabic story generation (MSA, Egyptian, Moroccan)."""

__version__ = "0.1.0"
