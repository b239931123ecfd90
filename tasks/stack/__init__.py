"""mmstack stack."""
