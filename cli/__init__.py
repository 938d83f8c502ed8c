"""The logstore command-line interface (click)."""
