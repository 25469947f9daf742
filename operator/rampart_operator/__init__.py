"""Rampart's operator: reconciles HardenedService resources (arrives with issue 4)."""

__version__ = "0.1.0"
