"""Datasets: where text comes from (sources), how it becomes tokens (tokenizers, corpus)."""
