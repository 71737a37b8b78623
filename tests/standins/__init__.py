"""Local stand-ins for what lives outside the machine (a remote model runner)."""
