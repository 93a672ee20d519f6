"""The contract: Avro schemas, the one codec and the topic catalogue."""
