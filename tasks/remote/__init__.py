"""mmstack remote."""
