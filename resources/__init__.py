"""Data files shipped with Tern (the model catalogue, images), read with importlib.resources."""
