"""Rampart's backup agent: encrypted, verified backups that restore."""

__version__ = "0.1.0"
