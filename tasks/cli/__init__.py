"""mmstack cli."""
