"""Scorers: early-decision alpha spending and the verdict of a whole verification."""
