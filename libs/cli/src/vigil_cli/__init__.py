"""`vigil`, the command line for humans and CI."""
