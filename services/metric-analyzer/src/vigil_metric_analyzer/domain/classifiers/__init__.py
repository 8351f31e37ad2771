"""Classifiers: measurements of one metric on one host -> verdict, rule and reason."""
