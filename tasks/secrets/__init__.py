"""mmstack secrets."""
