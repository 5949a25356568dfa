"""Reproducing the paper: presets and experiment families, sweeps, tables and figures across runs, the demo."""
