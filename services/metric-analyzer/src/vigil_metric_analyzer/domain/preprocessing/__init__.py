"""Preprocessing: series as arrays, robust statistics, SAX words."""
