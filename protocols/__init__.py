"""Protocols built only on simkit's public API (FedAvg, SecAgg, ...)."""
