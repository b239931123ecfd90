"""mmstack security."""
