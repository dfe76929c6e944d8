"""Local stack tooling: real Kafka and PostgreSQL servers for development and the tests."""
