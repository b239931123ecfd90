"""mmstack schema."""
