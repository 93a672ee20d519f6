"""Deployment: the embedded Apache Kafka broker and production manifests."""
