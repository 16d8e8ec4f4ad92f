"""Exchange-specific knowledge: key validation, request signing, endpoint scopes."""
