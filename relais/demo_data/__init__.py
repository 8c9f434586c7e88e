"""Data of the `relais demo` territory (package, so setuptools ships its JSON)."""
