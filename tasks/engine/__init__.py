"""mmstack engine."""
