"""Models of the privacy app, one module per concept (imported here for Django)."""
