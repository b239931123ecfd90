"""mmstack gpu."""
