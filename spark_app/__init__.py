"""Streaming recommendation job: Kafka sales -> validated events -> ALS runs."""
