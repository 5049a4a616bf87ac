"""The sales simulator: seeded synthetic (or replayed) purchase events sent to Kafka."""
