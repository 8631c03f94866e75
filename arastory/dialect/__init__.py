"""Dialect identification: published marker words and a character n-gram classifier."""
