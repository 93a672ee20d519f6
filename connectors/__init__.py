"""Connectors to the systems outside the hub."""
