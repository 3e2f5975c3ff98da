"""The CPU side: unicorn machine, guest adapter, privileged instructions, SCLP, loading."""
