"""Device models behind zPCI functions."""
