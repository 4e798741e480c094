"""The in-context learning lab."""
