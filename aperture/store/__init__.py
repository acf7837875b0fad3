"""Where images are: the only code that touches blob files or the SQL index."""
