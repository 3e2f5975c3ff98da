"""Pure-Python model of s390x zPCI firmware interpretation and of the host behind it."""
