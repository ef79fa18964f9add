"""Collectors: the plugin layer that samples local values."""
