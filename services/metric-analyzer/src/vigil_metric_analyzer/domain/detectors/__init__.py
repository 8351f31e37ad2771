"""Detectors: threshold rules and the comparison of one test host with its control."""
