"""The health directory: organisations and their members, imported from the public extractions (FINESS,
Annuaire Santé), beside the registered organisations of shared/auth.py (docs/directory.md)."""
