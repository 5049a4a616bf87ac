"""Plots and an HTML report of published recommendation runs (reads results/, never Spark)."""
